"""A real one-node SLURM cluster for the ``slurm`` tests: Debian's slurm-wlm and munge on this machine.

``start(folder)`` installs the packages when they are missing (root and apt-get needed), writes a one-node
``slurm.conf`` into ``folder`` (this machine's cores and memory, one partition ``debug``, no accounting, no
GPUs), starts munged, slurmctld and slurmd, and waits until the node is idle. Clients find the cluster through
``SLURM_CONF``, which ``start`` sets for this process and its children (sbatch passes it on to the jobs).
``stop`` ends the daemons it started. Also a script, to try the cluster by hand::

    python tests/slurm_cluster.py start /tmp/slurm   # prints the export line for SLURM_CONF
    python tests/slurm_cluster.py stop /tmp/slurm
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("slurmctld", "slurmd")
PARTITION = "debug"
CPUS = 4  # at least: four one-CPU jobs can start together (on fewer real cores, slurmd trusts this config)


class Unavailable(RuntimeError):
    """The cluster cannot be started here (the reason is the message)."""


def start(folder: str | os.PathLike, timeout_s: float = 60) -> dict[str, str]:
    """Start the cluster; the environment its clients need (also set in ``os.environ``)."""
    folder = Path(folder).resolve()
    _install()
    _start_munge()
    folder.mkdir(parents=True, exist_ok=True)
    conf = _write_conf(folder)
    env = {"SLURM_CONF": str(conf)}
    os.environ.update(env)
    for daemon in DAEMONS:
        pid_file = folder / f"{daemon}.pid"
        if _alive(pid_file):
            continue
        log = folder / f"{daemon}.log"
        subprocess.run(
            [shutil.which(daemon) or f"/usr/sbin/{daemon}", "-f", str(conf)],
            check=True,
            env={**os.environ, **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
    _wait_idle(folder, timeout_s)
    return env


def stop(folder: str | os.PathLike) -> None:
    """End the daemons ``start`` started in ``folder`` (munged stays: other users of the machine may need it)."""
    folder = Path(folder).resolve()
    for daemon in reversed(DAEMONS):
        pid_file = folder / f"{daemon}.pid"
        if _alive(pid_file):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while any(_alive(folder / f"{d}.pid") for d in DAEMONS) and time.monotonic() < deadline:
        time.sleep(0.2)


def _install() -> None:
    missing = [p for p, exe in zip(PACKAGES, ("slurmctld", "munged"), strict=True) if not _has(exe)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(
            f"SLURM is not installed and cannot be installed here ({' '.join(missing)}: needs root and apt-get)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        update = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise Unavailable(f"apt-get install {' '.join(missing)} failed: {(update.stderr + done.stderr)[-400:]}")


def _has(exe: str) -> bool:
    return bool(shutil.which(exe) or Path("/usr/sbin", exe).is_file())


def _start_munge() -> None:
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    if os.geteuid() != 0:
        raise Unavailable("munged is not running and starting it needs root")
    key = Path("/etc/munge/munge.key")
    if not key.is_file():
        subprocess.run(["mungekey", "--create"], check=True, capture_output=True)
        shutil.chown(key, "munge", "munge")
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True, capture_output=True)


def _write_conf(folder: Path) -> Path:
    host = socket.gethostname().split(".")[0]
    cpus = max(CPUS, os.cpu_count() or 1)
    memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=poolbench-test",
                f"SlurmctldHost={host}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                f"StateSaveLocation={folder / 'state'}",
                f"SlurmdSpoolDir={folder / 'spool'}",
                f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                f"SlurmdPidFile={folder / 'slurmd.pid'}",
                f"SlurmctldLogFile={folder / 'slurmctld.log'}",
                f"SlurmdLogFile={folder / 'slurmd.log'}",
                "SlurmctldPort=6917",  # not the default ports: a real cluster on this machine is left alone
                "SlurmdPort=6918",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "MpiDefault=none",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "ReturnToService=2",
                "SlurmdParameters=config_overrides",
                "SlurmdTimeout=60",
                "MinJobAge=600",  # finished jobs stay visible to squeue/scontrol for the tests' checks
                "KillWait=30",
                f"NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
                f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
                "",
            ]
        )
    )
    return conf


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def _wait_idle(folder: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
        state = (out.stdout or out.stderr).strip()
        if state in ("idle", "mixed", "allocated"):
            return
        time.sleep(0.5)
    logs = "".join((folder / f"{d}.log").read_text()[-300:] for d in DAEMONS if (folder / f"{d}.log").is_file())
    raise Unavailable(f"the SLURM node did not become idle in {timeout_s:.0f} s (sinfo: {state!r}); logs: {logs}")


if __name__ == "__main__":
    action, where = sys.argv[1], sys.argv[2]
    if action == "start":
        print(f"export SLURM_CONF={start(where)['SLURM_CONF']}")
    else:
        stop(where)
