"""The floor: one Python process making the raw libvirt-python calls, nothing else.

    python bench/floor.py create JOB.json   networkDefineXML + create + setAutostart each
    python bench/floor.py update JOB.json   one networkUpdate (modify ip-dhcp-host)

JOB.json holds the URI and the XML (made by the bench beforehand, untimed), so this
process costs what any tool must pay: the interpreter, `import libvirt`, the calls.
Run by path, not `-m bench.floor`, so that nothing of the bench is imported.
"""

import json
import sys
import time

import libvirt


def main() -> None:
    cmd, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        job = json.load(f)
    conn = libvirt.open(job["uri"])
    if cmd == "create":
        for xml in job["xmls"]:
            net = conn.networkDefineXML(xml)
            net.create()
            net.setAutostart(1)
    elif cmd == "update":
        net = conn.networkLookupByName(job["name"])
        t0 = time.perf_counter()
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
                   libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, job["parent_index"], job["xml"],
                   flags)
        print(json.dumps({"call_s": time.perf_counter() - t0}))
    else:
        raise SystemExit(f"unknown command {cmd}")
    conn.close()


if __name__ == "__main__":
    main()
