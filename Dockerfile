FROM python:3.11-slim
# WEB_CONCURRENCY: gunicorn workers; gunicorn recommends 2 x CPUs + 1 (5 on 2 CPUs).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=b24sms.settings.production WEB_CONCURRENCY=3
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_SECRET_KEY=build-only DJANGO_ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput \
    && useradd --create-home b24sms && mkdir -p /app/var/media && chown -R b24sms /app/var
USER b24sms
EXPOSE 8000
CMD ["gunicorn", "b24sms.wsgi:application", "--bind", "0.0.0.0:8000", "--timeout", "60"]
