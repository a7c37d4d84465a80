"""Hosts made on this machine, for the tests past one machine: each a Linux network namespace with its own address, plugged
into a switch (a bridge in a namespace of its own) by a veth cable, and a mount namespace of its own.

- Nothing leaves the test's namespaces: the subnet lives only on their interfaces; this machine's own network has no route to it.
- A worker host sees this machine's files except what a host of its own would not share: its /tmp and /dev/shm are empty
  tmpfs of its own, its ~ (HOME) is a folder in that /tmp, and the checkout is read-only (a host's own copy of the same commit).
- What the tutorial "Past one machine" says hosts share is shared the way a team shares it: the home, served by the first host's sshd and mounted
  with sshfs (FUSE) at the same path. Kernel NFS cannot run here: `nfs` is not in /proc/filesystems and there are no modules.
- A fault is what it is on a network: `cut` unplugs a host's cable at the switch (no packet, no reset: its peers learn it
  from silence), `mend` plugs it back, `power_off` unplugs it and kills every process in the host at once.
"""
import os, signal, subprocess, time
from pathlib import Path

SUBNET = '10.39.0'   # the test network's /24, on the namespaces' interfaces only


def sh(*cmd: str):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode: raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def cannot_make_hosts() -> str | None:
    """Why hosts cannot be made on this machine, for a reason the repo cannot mend (None: they can): root (network and mount
    namespaces) and the FUSE device. The tools are not asked here: env/setup-test.sh installs them, and a missing one fails the test"""
    if os.geteuid() != 0: return "making hosts needs root (network and mount namespaces)"
    if not Path('/dev/fuse').exists(): return "/dev/fuse is missing: sshfs cannot mount the shared home"
    return None


class Host:
    "One host: a network namespace at `address`, and a process holding its mount and UTS namespaces (its files, its name); `run` starts a command in them"
    def __init__(self, net: 'Network', n: int, mounts: str):
        self.net, self.n, self.name, self.address = net, n, f"h{n}", f"{SUBNET}.{n}"
        self.ns, self.port = f"{net.tag}h{n}", f"p{n}"
        sh('ip', 'netns', 'add', self.ns)
        sh('ip', '-n', net.switch, 'link', 'add', self.port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', self.ns)
        sh('ip', '-n', net.switch, 'link', 'set', self.port, 'master', 'switch', 'up')
        sh('ip', '-n', self.ns, 'addr', 'add', f"{self.address}/24", 'dev', 'eth0')
        sh('ip', '-n', self.ns, 'link', 'set', 'eth0', 'up'); sh('ip', '-n', self.ns, 'link', 'set', 'lo', 'up')
        self.home = '/tmp/.host/home' if mounts else os.environ.get('HOME', '/root')   # ~ of its own where its /tmp is its own
        script = f"set -e\nhostname {self.name}\n{mounts}\necho ready\nexec sleep infinity\n"
        self.holder = subprocess.Popen(['nsenter', f"--net=/run/netns/{self.ns}", 'unshare', '--mount', '--uts', '--propagation', 'private',
                                        'bash', '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline().strip()   # an event: the mounts are made (or the script failed)
        if line != 'ready': raise AssertionError(f"host {self.name} did not start: {self.holder.stderr.read()[-2000:]}")

    def command(self, *cmd: str, cwd: str | Path = '/') -> list[str]:
        "`cmd` as run inside this host (its network, its mounts), from `cwd`"
        return ['nsenter', f"--net=/run/netns/{self.ns}", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--uts=/proc/{self.holder.pid}/ns/uts",
                f"--wd={cwd}", '--', *cmd]

    def run(self, *cmd: str, env: dict | None = None, cwd: str | Path = '/', **kw) -> subprocess.Popen:
        "Start `cmd` on this host, with `env` over this machine's environment and the host's own HOME"
        return subprocess.Popen(self.command(*cmd, cwd=cwd), env={**os.environ, 'HOME': self.home, **(env or {})}, **kw)

    def call(self, *cmd: str, env: dict | None = None, cwd: str | Path = '/', timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        "Run `cmd` on this host to its end; its output captured"
        done = subprocess.run(self.command(*cmd, cwd=cwd), env={**os.environ, 'HOME': self.home, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)   # a hang guard
        if check and done.returncode:
            raise AssertionError(f"on {self.name}: {' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def pids(self) -> list[int]:
        "Every process in this host (its network namespace)"
        mine = os.stat(f"/run/netns/{self.ns}").st_ino
        found = []
        for entry in Path('/proc').iterdir():
            if entry.name.isdigit():
                try:
                    if os.stat(entry/'ns'/'net').st_ino == mine: found.append(int(entry.name))
                except OSError: continue
        return found

    def cut(self): sh('ip', '-n', self.net.switch, 'link', 'set', self.port, 'down')    # the cable unplugged at the switch
    def mend(self): sh('ip', '-n', self.net.switch, 'link', 'set', self.port, 'up')

    def power_off(self):
        "Unplugged, then every process in it killed at once: its peers hear nothing, neither a reset nor a goodbye"
        self.cut()
        for pid in self.pids():
            try: os.kill(pid, signal.SIGKILL)
            except ProcessLookupError: pass
        self.holder.wait(30)

    def wait_for_port(self, address: str, port: int, within: float = 120):
        "Wait until `address:port` accepts a connection from this host (a hang guard of `within` seconds on a busy machine)"
        deadline = time.time() + within
        while self.call('bash', '-c', f"exec 3<>/dev/tcp/{address}/{port}", check=False, timeout=30).returncode:
            if time.time() > deadline: raise AssertionError(f"{address}:{port} does not answer {self.name} after {within:g} s")
            time.sleep(0.3)


class Network:
    "A switch and the hosts plugged into it; `close` kills every process in them and removes the namespaces"
    def __init__(self):
        self.tag = f"mlf{os.getpid() % 100000}"
        self.switch = f"{self.tag}sw"
        self.hosts: list[Host] = []
        sh('ip', 'netns', 'add', self.switch)
        sh('ip', '-n', self.switch, 'link', 'add', 'switch', 'type', 'bridge')
        sh('ip', '-n', self.switch, 'link', 'set', 'switch', 'up')

    def host(self, mounts: str = '') -> Host:
        "A new host on the switch, its mount namespace made by the bash lines `mounts`"
        made = Host(self, len(self.hosts) + 1, mounts)
        self.hosts.append(made)
        return made

    def close(self):
        for host in self.hosts:
            for pid in host.pids():
                try: os.kill(pid, signal.SIGKILL)
                except ProcessLookupError: pass
            if host.holder.poll() is None: host.holder.kill()
            host.holder.wait(30)
        for ns in [h.ns for h in self.hosts] + [self.switch]:
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True, timeout=60)


def own_view(root: Path, shared: Path, mount: str | None, key: Path) -> str:
    """The mounts of a worker host: /tmp, /dev/shm and ~ its own; the checkout `root` read-only; the folder `shared` (the home)
    mounted at the same path by the command `mount` (the tutorial's sshfs line), told the key made for the test (None: not mounted,
    an empty folder of the host's own at that path)"""
    return f"""
key="$(cat {key})"
mkdir -p /run/mlfin-hosts && stage=$(mktemp -d /run/mlfin-hosts/root.XXXXXX)
mount --bind {root} $stage                                  # the checkout, kept aside while /tmp is replaced (it may lie under /tmp)
mount -t tmpfs -o mode=1777 host-tmp /tmp                   # a host's own temporary files
mount -t tmpfs -o mode=1777 host-shm /dev/shm
mkdir -p /tmp/.host/home /tmp/.host/ssh {root} {shared}
mount --move $stage {root} && rmdir $stage
mount -o remount,bind,ro {root}                             # its own copy of the same commit: not written by anyone
printf '%s\\n' "$key" > /tmp/.host/ssh/id && chmod 600 /tmp/.host/ssh/id
{mount + ' -o IdentityFile=/tmp/.host/ssh/id,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes' if mount else ''}
"""


def home_server(folder: Path, address: str) -> tuple[str, Path]:
    "An sshd config for the host that serves the home (sftp, one client key made here); (config path, the client's key)"
    folder.mkdir(parents=True, exist_ok=True)
    for key in ('host', 'client'):
        if not (folder/key).exists(): sh('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(folder/key))
    (folder/'authorized_keys').write_text((folder/'client.pub').read_text())
    (folder/'sshd_config').write_text(
        f"ListenAddress {address}\nHostKey {folder/'host'}\nAuthorizedKeysFile {folder/'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        f"PidFile {folder/'sshd.pid'}\nSubsystem sftp internal-sftp\n")
    Path('/run/sshd').mkdir(exist_ok=True)   # its privilege-separation folder
    return str(folder/'sshd_config'), folder/'client'
