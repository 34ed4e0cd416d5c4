"""ONNX backend node tests through qopt: import, convert, lower, run, compare.

The cases come from the onnx package itself
(onnx.backend.test.case.node.collect_testcases(): each has a one-node model,
inputs and the outputs of ONNX's numpy reference implementation), so nothing
is downloaded and no data is committed.

  python node_tests.py --report docs/OpCoverage.md      # write the report
  python node_tests.py --check docs/OpCoverage.md       # fail on regressions

Every case ends in one of:
  passed       outputs match the reference within the case's rtol/atol;
  failed       qopt crashed, or produced wrong numbers, or failed after
               accepting the model (a bug);
  unsupported  qopt refused the model with a clear error (an operator,
               attribute or type it does not handle yet), with the reason.
--check fails when any case crashes or when a case the committed report
lists as passed no longer passes.
"""
import argparse
import collections
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qopt_check  # noqa: E402

warnings.filterwarnings("ignore")


def _first_error(text):
    for line in text.splitlines():
        m = re.search(r"error: (.*)", line)
        if m:
            return m.group(1).strip()
    return text.strip().splitlines()[-1] if text.strip() else "no message"


def run_case(case):
    """Returns (status, reason)."""
    import onnx
    model = case.model
    op_types = sorted({n.op_type for n in model.graph.node})
    translate, opt = qopt_check._tools()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        r = subprocess.run([translate, "--import-onnx", "-mlir-print-debuginfo", path],
                           capture_output=True, text=True)
        if r.returncode < 0 or r.returncode > 1:
            return "failed", f"importer crashed (exit {r.returncode})"
        if r.returncode:
            return "unsupported", "import: " + _first_error(r.stderr)
        c = subprocess.run([opt, "--convert-onnx-to-qopt"], input=r.stdout,
                           capture_output=True, text=True)
        if c.returncode < 0 or c.returncode > 1:
            return "failed", f"conversion crashed (exit {c.returncode})"
        if c.returncode:
            return "unsupported", _first_error(c.stderr)
    for inputs, expected in case.data_sets:
        if any(a is None or isinstance(a, (list, dict)) for a in inputs + expected):
            return "unsupported", "sequence or optional values in the test data"
        inputs = [np.asarray(a) for a in inputs]
        expected = [np.asarray(a) for a in expected]
        if any(a.dtype == object for a in inputs + expected):
            return "unsupported", "test data of numpy object dtype"
        try:
            try:
                got = qopt_check.run_qopt(model, inputs)
            except KeyError as e:
                # Element types the mlir-runner harness cannot print
                # (unsigned): the compiled path (qoptc + qopt-run, .npy),
                # when .npy can carry them (not bfloat16 / float8).
                if any(a.dtype.kind not in "biuf" for a in inputs + expected):
                    raise e
                with tempfile.TemporaryDirectory() as tmp:
                    library = qopt_check.compile_model(model, tmp)
                    got = qopt_check.run_compiled(library, inputs, tmp)
        except KeyError as e:
            return "unsupported", f"test harness: element type {e} not handled"
        except qopt_check.QOptError as e:
            return "failed", f"{e.stage}: {_first_error(e.message)}"
        except subprocess.TimeoutExpired:
            return "failed", "timed out"
        for i, (e, g) in enumerate(zip(expected, got)):
            e = np.asarray(e)
            if e.shape != g.shape:
                return "failed", f"output {i} has shape {g.shape}, expected {e.shape}"
            if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
                if not np.array_equal(e.astype(np.int64), g.astype(np.int64)):
                    return "failed", f"output {i} differs"
                continue
            if not np.issubdtype(e.dtype, np.floating):
                return "unsupported", f"output element type {e.dtype}"
            # The reference's tolerances, widened to what 6-digit printing
            # of the results allows.
            rtol = max(case.rtol, 2e-6)
            atol = max(case.atol, 1e-7)
            if not np.allclose(g, e.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True):
                err = np.max(np.abs(g - e) / (np.abs(e) + atol))
                return "failed", f"output {i}: max relative error {err:.3g}"
    return "passed", ", ".join(op_types)


def collect(pattern=None):
    from onnx.backend.test.case.node import collect_testcases
    cases = collect_testcases(None)
    if pattern:
        cases = [c for c in cases if re.search(pattern, c.name)]
    return cases


def op_of(case):
    nodes = case.model.graph.node
    return nodes[0].op_type if len(nodes) == 1 else "+".join(sorted({n.op_type for n in nodes}))


def real_export_usage():
    """How many of the real exports (test/e2e/real/*/meta.json) use each
    default-domain operator."""
    usage = collections.Counter()
    real = os.path.join(os.path.dirname(os.path.abspath(__file__)), "real")
    for folder in sorted(os.listdir(real)) if os.path.isdir(real) else []:
        meta = os.path.join(real, folder, "meta.json")
        if os.path.isfile(meta):
            import json
            for key in json.load(open(meta))["op_histogram"]:
                domain, op = key.split("::")
                if domain == "ai.onnx":
                    usage[op] += 1
    return usage


def write_report(results, path):
    usage = real_export_usage()
    models = len([d for d in os.listdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "real"))
                  if d.endswith(("-dynamo", "-torchscript"))])
    by_op = collections.defaultdict(list)
    for name, op, status, reason in results:
        by_op[op].append((name, status, reason))
    totals = collections.Counter(status for _, _, status, _ in results)
    lines = [
        "# ONNX node test coverage",
        "",
        "Generated by `test/e2e/node_tests.py --report docs/OpCoverage.md` from the",
        "ONNX backend node tests of the installed `onnx` package (numpy reference",
        "outputs): each case is imported, converted, lowered to the CPU, run and",
        "compared. `test/e2e/node-tests.test` fails on a crash, a failing case or",
        "a case listed as passed that stops passing.",
        "",
        f"**{len(results)} cases: {totals['passed']} passed, {totals['failed']} failed, "
        f"{totals['unsupported']} unsupported.**",
        "",
        f"The last column counts the {models} real Hugging Face exports",
        "(`test/e2e/real`, both torch exporters) that use the operator; every one",
        "of them compiles and matches torch and onnxruntime at every shape its",
        "fixture holds (`test/e2e/real-exports.test`).",
        "",
        "| operator | cases | passed | failed | unsupported | real exports |",
        "|---|---|---|---|---|---|",
    ]
    for op in sorted(by_op):
        c = collections.Counter(s for _, s, _ in by_op[op])
        lines.append(f"| {op} | {len(by_op[op])} | {c['passed']} | {c['failed']} | "
                     f"{c['unsupported']} | {usage.get(op, '') if '+' not in op else ''} |")
    lines += ["", "## Cases that do not pass", "",
              "| case | status | reason |", "|---|---|---|"]
    for name, op, status, reason in sorted(results):
        if status != "passed":
            lines.append(f"| {name} | {status} | {reason.replace('|', '/')} |")
    lines += ["", "## Passing cases", ""]
    lines.append(", ".join(sorted(n for n, _, s, _ in results if s == "passed")))
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def read_passed(path):
    text = open(path).read()
    section = text.split("## Passing cases", 1)[1]
    return {n.strip() for n in section.replace("\n", " ").split(",") if n.strip()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", help="write the Markdown report here")
    ap.add_argument("--check", help="compare with this committed report")
    ap.add_argument("--filter", help="only cases whose name matches this regex")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    cases = collect(args.filter)
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_case, c): c for c in cases}
        for fut in concurrent.futures.as_completed(futures):
            c = futures[fut]
            try:
                status, reason = fut.result()
            except Exception as e:  # a harness bug must not hide the rest
                status, reason = "failed", f"driver: {type(e).__name__}: {e}"
            results.append((c.name, op_of(c), status, reason))
    totals = collections.Counter(r[2] for r in results)
    print(f"node tests: {totals['passed']} passed, {totals['failed']} failed, "
          f"{totals['unsupported']} unsupported of {len(results)}")
    if args.report:
        write_report(results, args.report)
    rc = 0
    crashes = [r for r in results if "crashed" in r[3]]
    for name, _, _, reason in crashes:
        print(f"CRASH {name}: {reason}")
        rc = 1
    if args.check:
        passed_before = read_passed(args.check)
        now = {r[0]: r for r in results}
        for name in sorted(passed_before):
            if name not in now:
                # Listed as passing but not run (renamed or dropped by the
                # onnx package, or collected wrongly): say so, never pass.
                if not args.filter or re.search(args.filter, name):
                    print(f"MISSING {name}: listed as passed but did not run")
                    rc = 1
            elif now[name][2] != "passed":
                print(f"REGRESSION {name}: {now[name][2]}: {now[name][3]}")
                rc = 1
        newly = sorted(r[0] for r in results if r[2] == "passed" and r[0] not in passed_before)
        if newly:
            print(f"newly passing (refresh the report): {', '.join(newly)}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
