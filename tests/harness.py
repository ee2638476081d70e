"""What the Python tests share: one "ok"/"FAIL" line per check, running a program, the exit code."""
import subprocess
import sys

failures = []


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what, flush=True)
    if not cond:
        failures.append(what)


def run(*cmd, timeout=900):
    """Runs cmd; returns (exit code, stdout and stderr together)."""
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def finish():
    print(f'{len(failures)} of the checks failed' if failures else 'all checks passed')
    sys.exit(1 if failures else 0)
