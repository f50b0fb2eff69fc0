#!/usr/bin/env python
"""CI: known vulnerabilities in requirements.txt and what it pulls in (pip-audit).

pip-audit resolves requirements.txt (every package, the transitive ones too) and asks PyPI's
vulnerability data about each pinned version. The run fails (exit 1) when any has a known
vulnerability. When the vulnerability data cannot be reached from this machine (pip-audit then
reports packages it "could not audit", or cannot connect at all), the run says so loudly and exits
0: an unreachable service is not a finding, and a machine that reaches only package indexes would
otherwise never land anything.

Run: `.venv/bin/python .ci/audit_dependencies.py` (after `make setup`).
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600  # seconds: resolving into a scratch environment takes ~10 s with the index reachable


def verdict(report: dict) -> tuple[int, list[str]]:
    """The exit code and the lines to print for one pip-audit JSON report."""
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    lines = []
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            aliases = ", ".join(vuln.get("aliases") or [])
            lines.append(
                f"VULNERABLE {dependency['name']}=={dependency.get('version', '?')}: {vuln.get('id')}"
                f"{f' ({aliases})' if aliases else ''}; fixed in {fixed}"
            )
    if skipped:
        names = ", ".join(d["name"] for d in skipped)
        lines.append(
            f"WARNING: {len(skipped)} of {len(dependencies)} packages could not be audited "
            f"(the vulnerability data is unreachable from here?): {names}"
        )
    audited = len(dependencies) - len(skipped)
    if vulnerable:
        lines.append(f"pip-audit: {len(vulnerable)} vulnerable package(s): upgrade the pins in requirements.txt.")
        return 1, lines
    lines.append(f"pip-audit: no known vulnerabilities in the {audited} package(s) audited.")
    return 0, lines


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "audit.json"
        command = [
            sys.executable,
            "-m",
            "pip_audit",
            "-r",
            str(ROOT / "requirements.txt"),
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            str(output),
        ]
        try:
            run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            print(
                f"WARNING: pip-audit did not finish in {TIMEOUT} s (vulnerability service unreachable?); "
                "dependencies NOT audited."
            )
            return 0
        try:
            report = json.loads(output.read_text())
        except (OSError, ValueError):
            tail = "\n".join((run.stderr or run.stdout).strip().splitlines()[-5:])
            print(f"WARNING: pip-audit could not audit (exit {run.returncode}); dependencies NOT audited:\n{tail}")
            return 0
    code, lines = verdict(report)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
