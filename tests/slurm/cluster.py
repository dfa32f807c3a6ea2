"""A throw-away one-node Slurm cluster (munged, optional mariadb + slurmdbd, slurmctld, slurmd) in a temp folder.

Nothing goes to /etc: SLURM_CONF points daemons and clients at the folder's slurm.conf, munged listens on a
socket inside it, and every daemon started here is stopped by its PID. Needs root and the Debian packages
(slurm-wlm, munge; slurmdbd and mariadb-server for accounting), which tests/slurm/run_stage.sh installs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

NODE = "localhost"  # the machine's own host name is not 'localhost': slurmd is told its name (-N)
CLUSTER = "diamondci"
NODE_MEM_MB = 4000  # what the node offers; a job asking for more is impossible by construction
# A requeued job may start again only after its old credential expired: Slurm sets its begin time that far
# ahead (default 120 s). 10 s keeps requeue tests short; restarting it sooner races the old credential
# ("Killing non-startable batch job: Job credential revoked").
CRED_EXPIRE_S = 10
BINARIES = ("munged", "runuser", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
ACCOUNTING_BINARIES = ("slurmdbd", "sacctmgr", "mariadbd", "mariadb-install-db", "mariadb")


def why_unavailable(accounting: bool) -> str | None:
    """None when this machine can run the cluster, else one line saying why not."""
    if os.geteuid() != 0:
        return "the real-Slurm tests need root (they start munged, slurmctld and slurmd)"
    missing = [b for b in BINARIES + (ACCOUNTING_BINARIES if accounting else ()) if shutil.which(b) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing; tests/slurm/run_stage.sh installs it)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "the munge user does not exist (install the munge package)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OneNodeCluster:
    """Start with `start()`, stop with `stop()`; `env` is what a client (sbatch, squeue, sacct) needs."""

    def __init__(self, root: Path, accounting: bool) -> None:
        self.root, self.accounting = Path(root), accounting
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self._procs: list[tuple[str, subprocess.Popen]] = []

    # ------------------------------------------------------------------ config
    def _write_configs(self) -> None:
        r = self.root
        for d in ("etc", "state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munged (its own user) must reach its folder inside
        self.munge_dir = r / "munge"
        self.munge_dir.mkdir()
        (self.munge_dir / "munge.key").write_bytes(os.urandom(1024))  # this cluster's own key
        munge = pwd.getpwnam("munge")
        for p in (self.munge_dir, self.munge_dir / "munge.key"):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        self.munge_dir.chmod(0o711)  # clients must reach the socket
        (self.munge_dir / "munge.key").chmod(0o600)
        self.socket = self.munge_dir / "munge.socket"
        self.ports = {k: _free_port() for k in ("ctld", "slurmd", "dbd", "mysql")}
        acct = (f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
                f"AccountingStoragePort={self.ports['dbd']}\nAccountingStoragePass={self.socket}\n" if self.accounting
                else "AccountingStorageType=accounting_storage/none\n")
        self.conf.write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost=localhost
SlurmctldPort={self.ports['ctld']}
SlurmdPort={self.ports['slurmd']}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket},cred_expire={CRED_EXPIRE_S}
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'state' / 'slurmctld.pid'}
SlurmdPidFile={r / 'spool' / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
JobRequeue=1
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
{acct}KillWait=2
InactiveLimit=0
MinJobAge=300
NodeName={NODE} NodeAddr=127.0.0.1 CPUs=2 RealMemory={NODE_MEM_MB} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")
        if self.accounting:
            dbd = self.root / "etc" / "slurmdbd.conf"  # found beside SLURM_CONF
            dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.socket},cred_expire={CRED_EXPIRE_S}
DbdHost=localhost
DbdPort={self.ports['dbd']}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports['mysql']}
StorageUser=root
StorageLoc=slurm_acct_db
PidFile={r / 'state' / 'slurmdbd.pid'}
LogFile={r / 'log' / 'slurmdbd.log'}
""")
            dbd.chmod(0o600)

    # ------------------------------------------------------------------ daemons
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._procs.append((name, proc))

    def _wait_for(self, what: str, check, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [n for n, p in self._procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited while waiting for {what}:\n{self.logs()}")
            if check():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{self.logs()}")

    def _ok(self, argv: list[str]) -> bool:
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=30).returncode == 0

    def _start_database(self) -> None:
        data = self.root / "mysql"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                        "--skip-test-db", "--auth-root-authentication-method=normal"],
                       check=True, capture_output=True, timeout=120)
        sock = self.root / "mysql.sock"
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
                                 f"--port={self.ports['mysql']}", "--bind-address=127.0.0.1", "--user=root",
                                 "--skip-grant-tables", f"--pid-file={self.root / 'state' / 'mariadb.pid'}"])
        self._wait_for("mariadb", lambda: self._ok(["mariadb", f"--socket={sock}", "-e", "SELECT 1"]), 60)
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait_for("slurmdbd", lambda: self._ok(["sacctmgr", "-n", "list", "cluster"]), 60)
        subprocess.run(["sacctmgr", "-i", "add", "cluster", CLUSTER], env=self.env, capture_output=True, timeout=30)

    def start(self) -> None:
        self._write_configs()
        try:
            self._spawn("munged", ["runuser", "-u", "munge", "--", "munged", "--foreground",
                                   f"--socket={self.socket}", f"--key-file={self.munge_dir / 'munge.key'}",
                                   f"--pid-file={self.munge_dir / 'munged.pid'}",
                                   f"--log-file={self.munge_dir / 'munged.log'}",
                                   f"--seed-file={self.munge_dir / 'munged.seed'}"])
            self._wait_for("munged", self.socket.exists, 30)
            if self.accounting:
                self._start_database()
            self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
            self._spawn("slurmd", ["slurmd", "-D", "-N", NODE])
            self._wait_for("the node to be idle", self._node_idle, 60)
        except BaseException:
            self.stop()
            raise

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True,
                             timeout=30)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def stop(self) -> None:
        """Cancel what is left (its processes belong to slurmstepd, not to us), then stop our daemons, newest first."""
        if any(n == "slurmctld" and p.poll() is None for n, p in self._procs):
            subprocess.run(["scancel", "--full", "--user=root"], env=self.env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.squeue():
                time.sleep(0.5)
        for _, proc in reversed(self._procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        self._procs = []

    # ------------------------------------------------------------------ helpers for tests
    def squeue(self) -> list[tuple[str, str, str]]:
        """(job id, state, reason) of every job the controller still lists as queued or running."""
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r"], env=self.env, capture_output=True,
                             text=True, timeout=30)
        return [tuple(line.split("|")) for line in out.stdout.splitlines() if line.strip()]

    def logs(self) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-15:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)
