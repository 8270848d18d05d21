"""A real Slurm on this machine for the job service's tests: munged, slurmctld and slurmd
(Debian's slurm-wlm 22.05 and munge) on free local ports, with a generated slurm.conf and
every file (munge key and socket, state, spool, logs) in one temporary folder. Started
once and shared; stopped by pid at the end. Needs root (slurmd runs jobs as their users).

    cluster = SlurmCluster()          # raises SlurmUnavailable with the reason
    env = cluster.env                 # SLURM_CONF for sbatch, squeue, ... and the service
    cluster.stop_controller(); cluster.start_controller()
    cluster.stop()
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


class SlurmUnavailable(Exception):
    pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_pid_gone(pid, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


class SlurmCluster:
    def __init__(self):
        for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol"):
            if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
                raise SlurmUnavailable(f"{tool} is not installed (scripts/install-deps.sh "
                                       "installs slurmctld, slurmd, slurm-client and munge)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("the Slurm fixture needs root")
        self.dir = tempfile.mkdtemp(prefix="infermesh-slurm-")
        os.chmod(self.dir, 0o755)
        self.host = socket.gethostname().split(".")[0]
        try:
            self._start_munge()
            self._write_conf()
            self.env = dict(os.environ, SLURM_CONF=self.conf)
            self.start_controller()
            self._start_slurmd()
            self._wait_idle()
        except Exception:
            self.stop()
            raise

    # -- daemons --

    def _start_munge(self):
        m = os.path.join(self.dir, "munge")
        os.makedirs(m)
        shutil.chown(m, "munge", "munge")
        os.chmod(m, 0o755)
        key = os.path.join(m, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(128))
        shutil.chown(key, "munge", "munge")
        os.chmod(key, 0o400)
        self.munge_socket = os.path.join(m, "munge.sock")
        self.munge_pid = os.path.join(m, "munged.pid")
        p = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged",
                            f"--key-file={key}", f"--socket={self.munge_socket}",
                            f"--pid-file={self.munge_pid}",
                            f"--log-file={os.path.join(m, 'munged.log')}",
                            f"--seed-file={os.path.join(m, 'munged.seed')}"],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise SlurmUnavailable(f"munged did not start: {p.stderr}")

    def _write_conf(self):
        d = self.dir
        for sub in ("state", "spool", "log"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
        cpus, mem = 1, 1000
        for field in out.split():
            if field.startswith("CPUs="):
                cpus = int(field[5:])
            elif field.startswith("RealMemory="):
                mem = int(field[11:])
        self.cpus = cpus
        self.conf = os.path.join(d, "slurm.conf")
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=infermeshtest
SlurmctldHost={self.host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=2
OverTimeLimit=0
InactiveLimit=0
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
NodeName={self.host} CPUs={cpus} RealMemory={max(100, mem - 1024)} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        with open(os.path.join(d, "cgroup.conf"), "w") as f:
            f.write("CgroupPlugin=cgroup/v1\n")

    def _pid(self, name):
        try:
            with open(os.path.join(self.dir, f"{name}.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def start_controller(self, clear_state=False):
        args = ["slurmctld", "-i"] + (["-c"] if clear_state else [])
        p = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise SlurmUnavailable(f"slurmctld did not start: {p.stderr}\n{self.log('slurmctld')}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.run(["scontrol", "ping"]).returncode == 0:
                return
            time.sleep(0.2)
        raise SlurmUnavailable(f"slurmctld does not answer: {self.log('slurmctld')}")

    def stop_controller(self):
        pid = self._pid("slurmctld")
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            _wait_pid_gone(pid)

    def _start_slurmd(self):
        p = subprocess.run(["slurmd"], env=self.env, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise SlurmUnavailable(f"slurmd did not start: {p.stderr}\n{self.log('slurmd')}")

    def _wait_idle(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = self.run(["sinfo", "-h", "-o", "%t"])
            if p.returncode == 0 and p.stdout.strip() in ("idle", "mix", "alloc"):
                return
            time.sleep(0.2)
        raise SlurmUnavailable(f"the node never became idle: {self.run(['sinfo']).stdout}"
                               f"\n{self.log('slurmd')}")

    def run(self, argv):
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)

    def squeue(self, name):
        p = self.run(["squeue", "-h", "--states=all", "-o", "%F|%i|%T", f"--name={name}"])
        return [line.split("|") for line in p.stdout.split()]

    def log(self, name):
        try:
            with open(os.path.join(self.dir, "log", f"{name}.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        # Jobs still running go with the cluster (this controller knows only ours).
        if getattr(self, "env", None) and self._pid("slurmctld"):
            self.run(["scancel", "--full", "-u", "root"])
            time.sleep(1)
        for name in ("slurmd", "slurmctld"):
            pid = self._pid(name)
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                    if not _wait_pid_gone(pid):
                        os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            with open(self.munge_pid) as f:
                pid = int(f.read().strip())
            os.kill(pid, signal.SIGTERM)
            _wait_pid_gone(pid)
        except (OSError, ValueError, AttributeError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
