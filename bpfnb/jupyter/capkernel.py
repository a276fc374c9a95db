"""Entry point of the capability kernel (`python -I -m bpfnb.jupyter.capkernel -f CONNECTION_FILE`).

Before ipykernel starts, the process confines the capabilities its binary gave it: it keeps
them itself but empties its bounding set, so nothing it starts (not even `sys.executable`,
the capability binary) holds any; then it drops CAP_SETPCAP, which it needed only for that.
"""

from __future__ import annotations

from bpfnb._sys.capabilities import CAPS, confine, status_masks


def main() -> None:
    permitted = status_masks()["CapPrm"]
    if permitted:
        confine(permitted & ~(1 << CAPS["setpcap"]))
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
