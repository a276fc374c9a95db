"""An ipyparallel engine run by the capability kernel's interpreter
(`PREFIX/lib/bpfnb-kernels/NAME/bin/python -I -m bpfnb.fleet.capengine [ipengine options]`):
as the capability kernel does, it keeps the capabilities its binary gave it but empties its
bounding set first, so nothing the engine starts holds any (see bpfnb.jupyter.kernelspec).
"""

from __future__ import annotations

from bpfnb._sys.capabilities import CAPS, confine, status_masks


def main() -> None:
    permitted = status_masks()["CapPrm"]
    if permitted:
        confine(permitted & ~(1 << CAPS["setpcap"]))
    from ipyparallel.engine.app import main as engine_main

    engine_main()


if __name__ == "__main__":
    main()
