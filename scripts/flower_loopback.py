"""Measure one ECOS round over real Flower processes on loopback, and the bytes on the wire.

    .venv/bin/python scripts/flower_loopback.py --clusters 100 --workdir /tmp/flower-loop [--tls]

The data are scripts/flower_round.py's (a 6000 x 32 pool, two clients of 300 rows, budget
500). The script runs the file-based CLI round first (sketch, respond, select for each
client, in process), then starts a SuperLink and two SuperNodes (each in its own folder and
process group, as tests/test_flower.py does), with a byte-counting TCP relay between each
SuperNode and the SuperLink, and runs ``flwr run``. It prints the ServerApp's step timings
(round.json), the wall time from ``flwr run`` to round.json, the payload bytes (the exchange
files) and the bytes each SuperNode's connection carried during the round, each way: HTTP
(TLS records with ``--tls``), Flower's framing, its polls and heartbeats included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from ecos_fast.flower.deploy import app_project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Relay:
    """127.0.0.1:port -> 127.0.0.1:target, counting the bytes each way."""

    def __init__(self, target: int) -> None:
        self.target, self.up, self.down = target, 0, 0
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
                with self.lock:
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _serve(self) -> None:
        while True:
            client, _ = self.sock.accept()
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the SuperLink has stopped; the SuperNode keeps retrying
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.up, self.down


def certificates(folder: Path) -> dict[str, Path]:
    """A CA and a 127.0.0.1 server certificate signed by it (PEM)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecos measurement CA")])

    def cert(subject: x509.Name, public: object, ext: object, critical: bool) -> x509.Certificate:
        b = x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
        b = b.public_key(public).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
        b = b.not_valid_before(now - day).not_valid_after(now + day)
        return b.add_extension(ext, critical=critical).sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]

    ca = cert(ca_name, ca_key.public_key(), x509.BasicConstraints(ca=True, path_length=None), True)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    server = cert(name, key.public_key(), san, False)
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    enc = serialization.NoEncryption()
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, enc))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args()
    root = a.workdir.resolve()
    rng = np.random.default_rng(0)
    cloud = root / "cloud"
    cloud.mkdir(parents=True)
    pool = np.concatenate([rng.normal(m, 1.0, (2000, 32)) for m in (0, 6, 12)])
    np.save(cloud / "pool.npy", pool.astype(np.float32))
    clients = []
    for i, m in enumerate((6, 12)):
        d = root / f"client{i}"
        d.mkdir()
        np.save(d / "private.npy", rng.normal(m, 1.0, (300, 32)).astype(np.float32))
        clients.append(d)

    from ecos_fast.cli import run

    c = cloud / "centroids.safetensors"
    pool_path = str(cloud / "pool.npy")
    t0 = time.perf_counter()
    assert run(["-q", "sketch", pool_path, "-o", str(c), "-k", str(a.clusters)]) == 0
    for i, d in enumerate(clients):
        r = d / "response.safetensors"
        args = ["-q", "respond", str(c), str(d / "private.npy"), "-o", str(r)]
        args += ["--epsilon", "0.58", "--delta", "1e-5", "--ledger", str(d / "cli.sqlite")]
        assert run([*args, "--budget-epsilon", "2", "--cloud", "acme"]) == 0
        sel = cloud / f"selected{i}.npy"
        args = ["-q", "select", pool_path, str(c), str(r), "--budget", str(a.budget)]
        assert run([*args, "-o", str(sel)]) == 0
    cli_s = time.perf_counter() - t0
    r_size = (clients[0] / "response.safetensors").stat().st_size
    print(
        f"file-based CLI round, 2 clients: {cli_s:.2f} s; centroids {c.stat().st_size} bytes "
        f"to each client, response {r_size} bytes back"
    )

    port = free_port()
    certs = certificates(cloud) if a.tls else {}
    home = root / "flwr-home"
    home.mkdir()
    conn = f'root-certificates = "{certs["ca"]}"' if a.tls else "insecure = true"
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "loop"\n\n[superlink.loop]\naddress = "127.0.0.1:{port}"\n{conn}\n'
    )
    app = root / "app"
    out = cloud / "out"
    app_project(
        app, pool=pool_path, clusters=a.clusters, budget=a.budget, output=out,
        min_clients=2, timeout=300.0,
    )  # fmt: skip
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
    }
    procs: list[subprocess.Popen[bytes]] = []

    def start(cmd: list[str], cwd: Path, log: str) -> Path:
        with (cwd / log).open("wb") as fh:
            procs.append(
                subprocess.Popen(
                    cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip
        return cwd / log

    def wait_for(path: Path, text: str) -> None:
        end = time.monotonic() + 120
        while text not in path.read_text(errors="replace"):
            if time.monotonic() > end:
                raise SystemExit(f"{path}: no {text!r}:\n{path.read_text()[-2000:]}")
            time.sleep(0.1)

    try:
        if a.tls:
            tls = ["--ssl-certfile", str(certs["cert"]), "--ssl-keyfile", str(certs["key"])]
            tls += ["--ssl-ca-certfile", str(certs["ca"])]
            node_tls = ["--root-certificates", str(certs["ca"])]
        else:
            tls = node_tls = ["--insecure"]
        link = ["flower-superlink", *tls, "--database", ":flwr-in-memory:"]
        link += ["--host", "127.0.0.1", "--port", str(port)]
        log = start(link, cloud, "sl.log")
        wait_for(log, "Uvicorn running")
        relays = [Relay(port) for _ in clients]
        logs = []
        for i, (d, relay) in enumerate(zip(clients, relays, strict=True)):
            node_config = (
                f'features="{d / "private.npy"}" ledger="{d / "flower.sqlite"}" epsilon=0.58 '
                f'delta=1e-5 budget-epsilon=2.0 cloud="acme"'
            )
            cmd = ["flower-supernode", *node_tls, "--superlink", f"127.0.0.1:{relay.port}"]
            cmd += ["--port", str(free_port()), "--node-config", node_config]
            logs.append(start(cmd, d, f"sn{i}.log"))
        for log in logs:
            wait_for(log, "SuperNode ID")
        time.sleep(1)
        before = [r.counts() for r in relays]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(bindir / "flwr"), "run", str(app)], cwd=root, env=env, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        t_submit = time.perf_counter() - t0
        while not (out / "round.json").exists():
            if time.perf_counter() - t0 > 300:
                raise SystemExit((cloud / "sl.log").read_text()[-3000:])
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        after = [r.counts() for r in relays]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    summary = json.loads((out / "round.json").read_text())
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in summary["timings"].items())
    kind = "TLS" if a.tls else "insecure"
    print(
        f"Flower loopback round ({kind}), 2 SuperNodes: ServerApp {summary['seconds']:.2f} s "
        f"({timings}); {wall:.1f} s from flwr run to round.json (flwr run returned after "
        f"{t_submit:.1f} s); payload {summary['bytes_sent']} bytes sent, "
        f"{summary['bytes_received']} received"
    )
    for i, (b, e) in enumerate(zip(before, after, strict=True)):
        print(
            f"  SuperNode {i} connection during the round: {e[0] - b[0]} bytes up "
            f"(to the SuperLink), {e[1] - b[1]} bytes down"
        )


if __name__ == "__main__":
    main()
