"""Shared helpers for grokit's interop scripts: argument parsing and a pass/fail counter that
ends with the line `N passed, M failed` (read by CI)."""
import argparse
import os
import sys


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--grokit", required=True, help="path to the grokit binary")
    p.add_argument("--shared", required=True, help="path to ../shared")
    p.add_argument("--work", required=True, help="scratch directory")
    p.add_argument("--examples", default=None, help="directory with built example binaries")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if a.examples is None:
        a.examples = os.path.join(os.path.dirname(os.path.abspath(a.grokit)), "examples")
    return a


class Checks:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL [{self.name}] {what}", flush=True)

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed or not self.passed else 0)

    def report(self, name, ok, detail=""):
        """`check`, and a `PASS name detail` line when it passes."""
        self.check(ok, f"{name} {detail}")
        if ok:
            print(f"PASS {name} {detail}", flush=True)
        return ok


def llama_cpp_dir(repo, checks):
    """Build (or reuse) llama.cpp through scripts/build_llama_cpp.sh and return its install
    directory (with bin/); on failure, record it in `checks` and end the script."""
    import subprocess
    r = subprocess.run(["bash", os.path.join(repo, "scripts", "build_llama_cpp.sh")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        sys.stderr.write(r.stderr[-2000:])
        checks.report("llama.cpp build", False, f"scripts/build_llama_cpp.sh exited {r.returncode}")
        checks.finish()
    return r.stdout.strip().splitlines()[-1]
