"""fp16 gradient compression on a 1 Gbit/s link: DDP step time with and without, against loopback.

    sudo .venv/bin/python bench/bench_compression_net.py [--rounds 3] [--results bench/RESULTS.md]

Two network namespaces joined by a veth pair, each end shaped to 1 Gbit/s by `tc ... tbf`, one
rank in each (torchrun-style environment, GLOO_SOCKET_IFNAME set to the veth). Each rank runs
hpc-train's DistributedTrainer (strategy ddp, gloo, so DDPBackend and its fp16 comm hook) on an
MLP with 67 MB of fp32 gradients. The same two ranks then run over loopback in the root
namespace, and one rank alone gives the compute-only floor. A quick raw TCP transfer reports the
rate each link really carries. Step time = epoch time / steps; the first epoch of every run is a
warm-up; runs of `none` and `fp16` take turns. Namespaces, veth and qdiscs are removed on exit,
error or Ctrl-C. --results replaces the "## fp16 compression on a 1 Gbit/s link" section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from hpc_train.render.sbatch import TORCH_ENV  # after the path: this checkout (imports no torch)

SECTION = "## fp16 compression on a 1 Gbit/s link"
COMPRESSIONS = ("none", "fp16")
WIDTH, CLASSES, BATCH, STEPS = 4096, 10, 16, 4  # MLP 4096-4096-10: 16.8 M parameters, 67 MB of gradients
RATE = "1gbit"
# burst must cover one timer tick at 1 Gbit/s (125 MB/s / HZ) and a 64 KB GSO segment.
TBF = ["rate", RATE, "burst", "512kb", "latency", "20ms"]
SUBNET = "10.77.0"
TCP_MB = 96
TARGET = 0.6
NOTES = """
Idle machine, huge pages (2026-11-26, load 0.7-1.2, three full runs back to back just before the
one above, 4 runs per compression each): with THP_MEM_ALLOC_ENABLE=1 (what hpc-train torch jobs
export) fp16/none was **0.58×** (372/641 ms) and **0.58×** (372/637 ms); with it set to 0, **0.59×**
(386/656 ms). Huge pages cut the compute of this model (its 67 MB weight) from 61 to 38-40 ms a
step and loopback steps from 135 to 112-115 ms, and the fixed part of a step shrinks, so the
ratio improves a little; the wire does not change. The earlier runs below missed 0.6× on a loaded
box (load 1.9-10.8): other work competes with fp16's extra casts and sums.

Side measurements (2026-11-26, same box, separate scripts, not rerun by this one): a bare gloo
`all_reduce` of the 16.8 M gradients took 561 ms in fp32 and 280 ms in fp16 over the shaped veth, but
73 ms and 72 ms over loopback (there gloo's fp16 sums, not the wire, set the pace, so halving the
bytes buys nothing); the cast pair adds ~30 ms. torch's `bf16_compress_hook` is refused on CPU
("requires CUDA 11+ and NCCL 2.10+"). DDP's `gradient_as_bucket_view=True` did not move either
compression beyond the noise over the veth. Five earlier full runs the same day gave 0.61× (3 runs
each, load 1.9-2.9), 0.67× (load 2.7-2.9), 0.69× (load 2.5), 0.63× (load 2.1-4.0) and 0.81× (load
5.9-10.8) on the veth, and 1.01×, 1.21×, 1.14×, 1.69×, 2.06× on loopback: fp16 spends more CPU than
`none` (casts, fp16 sums), so other work on this 2-core box pushes its ratio up.

What was tried to reach 0.6× (2026-11-26, veth part only, 4 runs per compression each, 1-min load
2.9-5.9 throughout, medians of the fp16/none ratios): torch's stock `fp16_compress_hook` 0.67×, 0.69×,
0.72× (fp16 ~515 ms); hpc-train's own hook (divide in float32, cast into a float16 buffer kept per
bucket, copy back) 0.65×, 0.65×, 0.67× (fp16 ~475 ms), kept. Not torch's float16 `div_` (2 ms here)
but the fresh 33 MB float16 tensor cost: malloc maps it fresh every step and faulting in its pages
took ~16 ms of the 21 ms cast (5.5 ms into a reused buffer). Timestamps in the hook show where a step
goes (none / fp16): forward+backward ~100 ms (80 ms on an idle box), the allreduce ~570 / ~300 ms,
copy into the gradients ~10 / ~15 ms, SGD step ~25 ms. DDP puts all 16.8 M gradients into one bucket
(the 4096×4096 weight alone is 67 MB and its gradient comes last in backward), so nothing overlaps
and `bucket_cap_mb` cannot help: 1 MB gave 0.64× (one run), not exposed. `gradient_as_bucket_view=True`
with the new hook gave 0.61× and 0.66× (not beyond the noise, not kept). What stays besides the wire
is ~150 ms of compute, copies and optimizer on a loaded box, which puts 0.6× just out of reach here.
"""
WORKER_TIMEOUT_S = 240.0


# -- the link -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One end of the link: the namespace a rank runs in, its veth and its address."""

    netns: str | None  # None: the root namespace
    ifname: str
    address: str

    def prefix(self) -> list[str]:
        """argv prefix that runs a command inside this side's namespace."""
        return ["ip", "netns", "exec", self.netns] if self.netns else []


LOOPBACK = (Side(None, "lo", "127.0.0.1"), Side(None, "lo", "127.0.0.1"))


def ip_command(argv: Sequence[str]) -> None:
    """One `ip`/`tc` call through hpc-train's command choke point (argv, timeout, quoted errors)."""
    from hpc_train.commands import run_command

    run_command(argv, timeout=20)


@contextmanager
def shaped_veth(tag: str) -> Iterator[tuple[Side, Side]]:
    """Two namespaces joined by a veth pair shaped to RATE at both ends; removed on the way out."""
    sides = (Side(f"hpcbench-{tag}-a", f"hb{tag}a", f"{SUBNET}.1"),
             Side(f"hpcbench-{tag}-b", f"hb{tag}b", f"{SUBNET}.2"))
    made: list[str] = []
    try:
        for side in sides:
            ip_command(["ip", "netns", "add", side.netns])
            made.append(side.netns)  # type: ignore[arg-type]
        a, b = sides
        ip_command(["ip", "link", "add", a.ifname, "type", "veth", "peer", "name", b.ifname])
        for side in sides:
            ns = side.netns or ""
            ip_command(["ip", "link", "set", side.ifname, "netns", ns])
            ip_command(["ip", "-n", ns, "addr", "add", f"{side.address}/24", "dev", side.ifname])
            ip_command(["ip", "-n", ns, "link", "set", side.ifname, "up"])
            ip_command(["ip", "-n", ns, "link", "set", "lo", "up"])
            ip_command(["tc", "-n", ns, "qdisc", "add", "dev", side.ifname, "root", "tbf", *TBF])
        yield sides
    finally:
        # Deleting a namespace destroys the veth end (and so the pair) and the qdiscs inside it.
        for ns in made:
            done = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"teardown: `ip netns del {ns}` failed: {done.stderr.strip()}", file=sys.stderr)


# -- child processes ------------------------------------------------------------------------------


class Children:
    """Processes this script started; all are killed (by pid) before the namespaces go."""

    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start argv with stdout+stderr into a temp file (no pipe to fill up)."""
        out = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by kill_all()
        proc = subprocess.Popen(list(argv), env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, out))
        return proc

    def wait(self, proc: subprocess.Popen[bytes], timeout: float) -> str:
        """Wait for proc; its output; RuntimeError quoting the output when it failed or hung."""
        out = next(f for p, f in self.procs if p is proc)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        out.seek(0)
        text = out.read().decode(errors="replace")
        if code != 0:
            what = "timed out" if code is None else f"exited {code}"
            raise RuntimeError(f"`{' '.join(map(str, proc.args))}` {what}:\n{text[-3000:]}")  # type: ignore[arg-type]
        return text

    def kill_all(self) -> None:
        """Kill whatever is still running."""
        for proc, out in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
        self.procs.clear()


def this_script(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def tcp_rate(children: Children, sender: Side, receiver: Side, port: int) -> float:
    """Gbit/s of one raw TCP stream of TCP_MB from sender to receiver."""
    env = dict(os.environ)
    sink = children.start([*receiver.prefix(), *this_script("--tcp-sink", receiver.address, str(port))], env)
    deadline = time.monotonic() + 30
    send_argv = [*sender.prefix(), *this_script("--tcp-send", receiver.address, str(port), str(TCP_MB))]
    while True:  # the sink may not be listening yet
        send = children.start(send_argv, env)
        try:
            out = children.wait(send, 60)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    children.wait(sink, 30)
    nbytes, seconds = json.loads(out.strip().splitlines()[-1])
    return nbytes * 8 / seconds / 1e9


def tcp_sink(host: str, port: int) -> None:
    """Accept one connection, read to EOF, answer one byte."""
    with socket.create_server((host, port)) as server:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 20):
                pass
            conn.sendall(b"k")


def tcp_send(host: str, port: int, mb: int) -> None:
    """Send mb MB and wait for the sink's answer; print [bytes, seconds]."""
    chunk = b"\0" * (1 << 20)
    with socket.create_connection((host, port), timeout=30) as conn:
        start = time.perf_counter()
        for _ in range(mb):
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
        seconds = time.perf_counter() - start
    print(json.dumps([mb << 20, seconds]))


# -- the ranks ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_environment() -> dict[str, str]:
    """This process's environment over the job defaults (THP_MEM_ALLOC_ENABLE=0 here gives an A/B)."""
    return {**TORCH_ENV, **os.environ}


def run_ranks(children: Children, sides: Sequence[Side], compressions: Sequence[str], rounds: int,
              epochs: int) -> dict[str, list[float]]:
    """One rank per side (torchrun-style environment); rank 0's step times per compression."""
    port = free_port()
    procs = []
    for rank, side in enumerate(sides):
        # What an hpc-train torch job exports (unless this shell sets it), one thread a rank.
        env = {**rank_environment(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        if len(sides) > 1:
            env.update(RANK=str(rank), WORLD_SIZE=str(len(sides)), LOCAL_RANK="0", GROUP_RANK=str(rank),
                       MASTER_ADDR=sides[0].address, MASTER_PORT=str(port), GLOO_SOCKET_IFNAME=side.ifname)
        argv = [*side.prefix(), *this_script("--worker", "--rounds", str(rounds), "--epochs", str(epochs),
                                             "--compressions", *compressions)]
        procs.append(children.start(argv, env))
    outputs = [children.wait(proc, WORKER_TIMEOUT_S) for proc in procs]
    line = next(ln for ln in outputs[0].splitlines() if ln.startswith("RESULT "))
    return {k: [float(x) for x in v] for k, v in json.loads(line.removeprefix("RESULT ")).items()}


def worker(compressions: Sequence[str], rounds: int, epochs: int) -> None:
    """A rank: `rounds` runs of train() per compression, taking turns; rank 0 prints step times."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hpc_train.models.mlp import MLP
    from hpc_train.runtime import DistributedTrainer

    torch.set_num_threads(1)  # two ranks on two cores
    times: dict[str, list[float]] = {c: [] for c in compressions}
    trainers = []
    for round_ in range(rounds):
        for compression in compressions if round_ % 2 == 0 else compressions[::-1]:
            # The first trainer joins the process group; later ones find it and reuse it.
            trainer = DistributedTrainer(strategy="ddp", backend="gloo", compression=compression,
                                         optimizer="sgd", learning_rate=1e-3)
            trainers.append(trainer)
            world = trainer.world_size
            gen = torch.Generator().manual_seed(0)
            n = BATCH * STEPS * world
            data = TensorDataset(torch.randn(n, WIDTH, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen))
            torch.manual_seed(0)
            history = trainer.train(MLP(WIDTH, [WIDTH], CLASSES), DataLoader(data, batch_size=BATCH), epochs)
            # samples_per_s counts every rank's samples over the epoch's training time.
            times[compression] += [BATCH * world / float(rec["samples_per_s"]) for rec in history[1:]]
    if trainers[0].is_main:
        print("RESULT " + json.dumps(times), flush=True)
    for trainer in reversed(trainers):
        trainer.close()


# -- report ---------------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1e3:.0f} | {min(values) * 1e3:.0f}-{max(values) * 1e3:.0f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


def render(res: dict[str, Any], command: str) -> str:
    """The RESULTS.md section."""
    veth, loop, alone = res["veth"], res["loopback"], res["compute"]["none"]
    med = {net: {c: statistics.median(res[net][c]) for c in COMPRESSIONS} for net in ("veth", "loopback")}
    ratio = {net: med[net]["fp16"] / med[net]["none"] for net in med}
    n = len(veth["none"])
    rows = ["| network | compression | median ms/step | min-max ms | fp16 / none |", "|---|---|---:|---:|---|"]
    for net, label, got in (("veth", "1 Gbit/s veth (tbf)", veth), ("loopback", "loopback", loop)):
        for c in COMPRESSIONS:
            cell = f"**{ratio[net]:.2f}×**" if c == "fp16" else ""
            rows.append(f"| {label} | {c} | {spread(got[c])} | {cell} |")
    rows.append(f"| — (1 rank, no allreduce) | compute only | {spread(alone)} | |")
    met = "met" if ratio["veth"] <= TARGET else "NOT met"
    if ratio["loopback"] > 1.05:
        loop_verdict = "costs more than it saves"
    elif ratio["loopback"] >= 0.95:
        loop_verdict = "saves nothing"
    else:
        loop_verdict = "saves less"
    compute = statistics.median(alone)
    comm = {net: {c: med[net][c] - compute for c in COMPRESSIONS} for net in med}
    # Best fp16 can do: compute and casts unchanged, communication halved.
    floor = (compute + res["cast"] + comm["veth"]["none"] / 2) / med["veth"]["none"]
    return "\n".join([
        SECTION,
        "",
        (f"`{command}` — {time.strftime('%Y-%m-%d')}, machine `{platform.node()}`, {os.cpu_count()} cores, "
         f"torch {res['torch']}, hpc-train {res['revision']}, 1-min load average {res['load'][0]:.1f} before, "
         f"{res['load'][1]:.1f} after (the machine is shared). Two network namespaces joined by a veth pair, "
         f"both ends `tc qdisc add dev VETH root tbf {' '.join(TBF)}`; one rank in each (RANK/WORLD_SIZE/"
         f"MASTER_ADDR={SUBNET}.1, GLOO_SOCKET_IFNAME=the veth). A raw TCP stream ({TCP_MB} MB, Python "
         f"sockets) carried **{res['tcp_veth']:.2f} Gbit/s** over the shaped veth and "
         f"{res['tcp_loopback']:.1f} Gbit/s over loopback. Each rank: hpc-train "
         "`DistributedTrainer(strategy=\"ddp\", backend=\"gloo\", compression=...)` (DDPBackend; fp16 = "
         f"its `fp16_compress_hook`), MLP {WIDTH}-{WIDTH}-{CLASSES} (67 MB of fp32 gradients), SGD, "
         f"batch {BATCH} a rank, 1 torch thread a rank, THP_MEM_ALLOC_ENABLE="
         f"{rank_environment()['THP_MEM_ALLOC_ENABLE']}, {STEPS} steps an epoch. Step time = epoch time / "
         f"{STEPS}; the first epoch of each `train()` is a warm-up; {res['rounds']} runs per compression "
         f"taking turns, {n} timed epochs each."),
        "",
        *rows,
        "",
        (f"On the 1 Gbit/s link fp16 compression takes {ms(med['veth']['fp16'])} a step against "
         f"{ms(med['veth']['none'])} without: **{ratio['veth']:.2f}×** (target ≤ {TARGET}×: {met}). Above "
         f"the {ms(compute)} of compute, communication goes from {ms(comm['veth']['none'])} to "
         f"{ms(comm['veth']['fp16'])} ({comm['veth']['fp16'] / comm['veth']['none']:.2f}×): the bytes on "
         f"the wire halve, and the casts (67 MB halved, to fp16 and back: {ms(res['cast'])} on one core here) and "
         f"the compute do not shrink, which puts the floor near {floor:.2f}× for this model. "
         f"On loopback compression {loop_verdict}: {ms(med['loopback']['fp16'])} against "
         f"{ms(med['loopback']['none'])} a step (**{ratio['loopback']:.2f}×**); the link moves several GB/s, "
         "so halving the bytes saves about what the casts and gloo's slower fp16 sums cost. Compress "
         "gradients when the network is the bottleneck (between nodes on 1-10 Gbit/s Ethernet), not "
         "between ranks of one node."),
        NOTES,
    ])


def cast_seconds() -> float:
    """Median time of what the fp16 hook adds on the CPU: 67 MB of fp32 halved, cast to fp16 (into a
    reused buffer, as DDPBackend's hook does) and back, 1 thread."""
    import torch

    torch.set_num_threads(1)
    grads = torch.randn(WIDTH * (WIDTH + 1) + CLASSES * (WIDTH + 1))
    wire = torch.empty_like(grads, dtype=torch.float16)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        grads.copy_(wire.copy_(grads.div_(2)))
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def hpc_train_revision() -> str:
    """The commit of the hpc_train being measured, and whether it had uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "not a git checkout"
    return commit + (" with uncommitted changes" if git("status", "--porcelain", "--", "hpc_train") else "")


def measure(rounds: int, epochs: int) -> dict[str, Any]:
    """Everything the section reports; the link exists only inside this function."""
    import torch

    res: dict[str, Any] = {"torch": torch.__version__, "rounds": rounds, "load": [os.getloadavg()[0]],
                           "revision": hpc_train_revision(), "cast": cast_seconds()}
    children = Children()
    try:
        with shaped_veth(str(os.getpid())) as sides:
            res["tcp_veth"] = tcp_rate(children, sides[0], sides[1], 5201)
            print(f"raw TCP over the shaped veth: {res['tcp_veth']:.3f} Gbit/s", flush=True)
            res["veth"] = run_ranks(children, sides, COMPRESSIONS, rounds, epochs)
            print("veth", {c: f"{statistics.median(v) * 1e3:.0f} ms" for c, v in res["veth"].items()}, flush=True)
            children.kill_all()
        res["tcp_loopback"] = tcp_rate(children, *LOOPBACK, free_port())
        print(f"raw TCP over loopback: {res['tcp_loopback']:.3f} Gbit/s", flush=True)
        res["loopback"] = run_ranks(children, LOOPBACK, COMPRESSIONS, rounds, epochs)
        print("loopback", {c: f"{statistics.median(v) * 1e3:.0f} ms" for c, v in res["loopback"].items()},
              flush=True)
        res["compute"] = run_ranks(children, LOOPBACK[:1], ("none",), rounds, epochs)
    finally:
        children.kill_all()
    res["load"].append(os.getloadavg()[0])
    return res


def refuse(message: str) -> None:
    print(f"bench_compression_net: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="train() runs per compression and network")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run, the first one a warm-up")
    parser.add_argument("--results", type=Path, help="write the section into this RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compressions", nargs="+", default=list(COMPRESSIONS), help=argparse.SUPPRESS)
    parser.add_argument("--tcp-sink", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--tcp-send", nargs=3, metavar=("HOST", "PORT", "MB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.compressions, args.rounds, args.epochs)
        return
    if args.tcp_sink:
        tcp_sink(args.tcp_sink[0], int(args.tcp_sink[1]))
        return
    if args.tcp_send:
        tcp_send(args.tcp_send[0], int(args.tcp_send[1]), int(args.tcp_send[2]))
        return
    if args.epochs < 2 or args.rounds < 1:
        refuse("--epochs must be at least 2 (the first is a warm-up) and --rounds at least 1")
    if os.geteuid() != 0:
        refuse("needs root to create network namespaces, a veth pair and tc qdiscs\n"
               "HINT: sudo .venv/bin/python bench/bench_compression_net.py")
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        refuse(f"{' and '.join(missing)} not found on PATH\n"
               "HINT: apt-get install iproute2 (scripts/setup.sh all installs it)")
    # SIGINT raises KeyboardInterrupt; make SIGTERM/SIGHUP unwind the same way so the link goes.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
    started = time.perf_counter()
    try:
        res = measure(args.rounds, args.epochs)
    except KeyboardInterrupt:
        print("bench_compression_net: interrupted; namespaces and workers removed", file=sys.stderr)
        sys.exit(130)
    command = ".venv/bin/python bench/bench_compression_net.py" + (f" --results {args.results}" if args.results else "")
    section = render(res, command)
    print(section)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    if args.results:
        from _results import write_section

        write_section(args.results, section)


if __name__ == "__main__":
    main()
