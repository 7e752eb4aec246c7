"""Calls vserverd through python's varlink package and checks the answers."""
import os
import sys
import threading

import varlink

address, idl, web_config = sys.argv[1], sys.argv[2], sys.argv[3]

with varlink.Client(address=address) as client:
    # GetInfo / GetInterfaceDescription through the client's own introspection.
    info = client.get_interfaces()
    assert "org.linux-vserver.Manager" in info, info
    with client.open("org.varlink.service") as svc:
        info = svc.GetInfo()
        assert info["product"] == "vserverd", info
        assert "org.linux-vserver.Manager" in info["interfaces"], info
        desc = svc.GetInterfaceDescription("org.linux-vserver.Manager")
        assert desc["description"].strip() == idl.strip(), "description differs from the committed IDL"

    # The client parses our IDL itself: this fails if python's parser cannot read it.
    with client.open("org.linux-vserver.Manager") as m:
        listing = m.List()
        names = [g["name"] for g in listing["guests"]]
        assert names == ["web", "zbroken"], listing
        assert listing["guests"][0]["context"] == 40100
        assert listing["guests"][0]["mark"] == ["default"]
        st = m.Status("web")
        assert st["state"] == "stopped", st
        try:
            m.Status("nosuch")
        except varlink.VarlinkError as e:
            assert e.error() == "org.linux-vserver.Manager.NoSuchGuest", e.error()
            assert e.parameters()["name"] == "nosuch"
        else:
            raise AssertionError("Status(nosuch) did not fail")
        # A failed step comes back with its name and errno beside the message.
        try:
            m.Start("zbroken", None)
        except varlink.VarlinkError as e:
            assert e.error() == "org.linux-vserver.Manager.Failed", e.error()
            p = e.parameters()
            assert p["step"] == "stage.mounts", p
            assert p["errno"] == 2, p
            assert "zbroken/fstab:1: mount point /mnt in the guest" in p["message"], p
        else:
            raise AssertionError("Start(zbroken) did not fail")
    # A `more` call: Events streams to python too. The call goes out at the first next(), so a
    # thread edits web's config until the first event arrives.
    stop = threading.Event()

    def poke():
        i = 0
        while not stop.is_set():
            with open(os.path.join(web_config, "nice"), "w") as f:
                f.write("%d\n" % (i % 2))
            i += 1
            stop.wait(0.1)

    threading.Thread(target=poke, daemon=True).start()
    with client.open("org.linux-vserver.Manager") as m:
        events = m.Events(_more=True)
        first = next(events)
        stop.set()
        assert first["name"] == "web", first
        assert first["kind"] == "config-changed", first
print("python varlink: ok")
