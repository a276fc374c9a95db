"""Generate notebooks/02-stacks.ipynb."""

import nbformat as nbf

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s))  # noqa: E731
code = lambda s: cells.append(nbf.v4.new_code_cell(s))  # noqa: E731

md("""# Stacks: CPU profiles and flame graphs

A perf event fires on every CPU ~99 times a second; a small BPF program records the user
and kernel stack of whatever runs, counting samples per (process, stack). `bpfnb.profile()`
ships that program (you can read it below), symbolizes the stacks (kernel symbols from
`/proc/kallsyms`, user symbols from each binary's ELF tables) and returns a `Stacks`.""")
code("""%load_ext bpfnb
import os, subprocess, tempfile
import pandas as pd
import bpfnb
pd.set_option("display.precision", 1)   # percentages as 12.3, not 12.345679
print(bpfnb.profile_source())""")
md("""A workload with a known shape: `main -> a -> b -> c` spins three units of work for every
one unit `main -> x -> y` spins, and `main -> s` reads `/dev/zero` (kernel time). It is built
with frame pointers so user stacks can be walked.""")
code("""src = os.path.abspath("../tests/workload/callchain.c")
binary = os.path.join(tempfile.mkdtemp(), "callchain")
subprocess.run(["gcc", "-O0", "-g", "-fno-omit-frame-pointer", "-o", binary, src], check=True);""")
code("""profile = bpfnb.profile(command=[binary, "4", "3", "1", "1"], duration=10)
profile""")
md("The interactive flame graph above: click a frame to zoom, type in the search box, hover "
   "for counts. The same data as a table, per process and split by kernel and user time:")
code("profile.by_process()")
code("profile.kernel_user_split()")
code("""chains = {}
for line in profile.folded().splitlines():
    stack, n = line.rsplit(" ", 1)
    names = [f.split(" [")[0] for f in stack.split(";")[1:]]   # root first, after the comm
    ours = ";".join(n for n in names if n in {"main", "a", "b", "c", "x", "y"})
    key = ours if ours in ("main;a;b;c", "main;x;y") else "other"
    chains[key] = chains.get(key, 0) + int(n)
abc, xy = chains["main;a;b;c"], chains["main;x;y"]
print(chains, f"a-b-c share: {abc / (abc + xy):.2f} (expected 0.75)")
assert 0.6 < abc / (abc + xy) < 0.9""")
md("A static flame graph (matplotlib) and the icicle view, root at the top:")
code("profile.plot_flame(icicle=True);")
md("""## What changed between two runs

Profile again with the work split the other way round (1 unit of `c` per 3 of `y`). The
differential flame graph colours what grew red and what shrank blue.""")
code("""after = bpfnb.profile(command=[binary, "4", "1", "3", "1"], duration=10)
diff = profile.diff(after)
funcs = diff.df(level="function")
funcs.head()   # largest changes first""")
code("""diff""")
md("""## Exports

Folded text for Brendan Gregg's `flamegraph.pl`, and speedscope JSON (open it at
speedscope's site or its offline app).""")
code("""print("\\n".join(profile.folded().splitlines()[:5]))
import json
path = os.path.join(tempfile.mkdtemp(), "profile.speedscope.json")
with open(path, "w") as f:
    json.dump(profile.speedscope(), f)
os.path.getsize(path) > 0""")
md("""## The whole machine, from a magic

`%bpf_profile -d SECONDS` samples every process for a while; `-p PID` picks one;
`-- COMMAND` starts one.""")
code("""busy = subprocess.Popen([binary, "3", "1", "1"])
machine = %bpf_profile -d 2
busy.wait()
machine.by_process().head()""")
md("""## Exercise

Profile only kernel stacks of the workload (`user=False`). Which kernel function does
`main -> s` spend its time in?""")
code("# your code here")
code("""# solution
kernel_only = bpfnb.profile(command=[binary, "3", "1", "1", "4"], duration=10, user=False)
kernel_only.functions().head()""")

for n, cell in enumerate(cells):   # stable ids: regenerating changes only what changed
    cell.id = f"cell-{n:02d}"
nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, "notebooks/02-stacks.ipynb")
