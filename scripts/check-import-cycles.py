#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Checks that no module of src/ imports one that imports it back (directly or round a longer
circle), reading the `use super::…`, `use crate::…` and path expressions of each file (test
modules excluded). Exits 1 and names the circle if there is one.

    scripts/check-import-cycles.py [--list]     # --list: every module's imports, one per line
"""
import glob
import re
import sys

ROOT = "src"


def module_of(path):
    parts = path[len(ROOT) + 1:-3].split("/")
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return tuple(["crate"] + parts)


MODULES = {module_of(f): f for f in glob.glob(ROOT + "/**/*.rs", recursive=True)}


def resolve(current, path):
    """The module of `src/` a path names (its longest module prefix), or None (external)."""
    parts = path.split("::")
    base = list(current)
    if parts[0] == "crate":
        base, parts = ["crate"], parts[1:]
    elif parts[0] == "self":
        parts = parts[1:]
    elif parts[0] == "super":
        while parts and parts[0] == "super":
            base, parts = base[:-1], parts[1:]
    elif tuple(base + [parts[0]]) not in MODULES:
        return None
    full = base + parts
    for n in range(len(full), 0, -1):
        if tuple(full[:n]) in MODULES:
            return tuple(full[:n])
    return None


def imports(module, path):
    src = open(path).read()
    src = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", src, flags=re.S)
    found = {}
    for use in re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", src, re.M):
        use = " ".join(use.split())
        grouped = re.match(r"([\w:]+)::\{(.*)\}$", use)
        paths = []
        if grouped:
            for item in grouped.group(2).split(","):
                item = re.sub(r"::\{.*", "", item.strip().split(" as ")[0].strip())
                if item:
                    paths.append(grouped.group(1) + "::" + item)
        else:
            paths = [use.split(" as ")[0]]
        for p in paths:
            target = resolve(module, p)
            if target and target != module:
                found.setdefault(target, []).append("use " + p)
    for p in re.findall(r"\b((?:super|crate)(?:::\w+)+)", src):
        target = resolve(module, p)
        if target and target != module:
            found.setdefault(target, []).append(p)
    return found


def name(module):
    return "::".join(module)


def main():
    edges = {m: imports(m, f) for m, f in MODULES.items()}
    if "--list" in sys.argv:
        for m in sorted(edges):
            for target, lines in sorted(edges[m].items()):
                print(f"{MODULES[m]}: {name(target)} ({', '.join(sorted(set(lines)))})")
    state, circles = {}, []

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                circles.append(stack[stack.index(t):] + [t])
            elif not state.get(t):
                visit(t, stack)
        stack.pop()
        state[m] = 2

    for m in edges:
        if not state.get(m):
            visit(m, [])
    for circle in circles:
        print("import circle: " + " -> ".join(name(m) for m in circle))
    if circles:
        sys.exit(1)
    print(f"no import circle among the {len(MODULES)} modules of {ROOT}/")


if __name__ == "__main__":
    main()
