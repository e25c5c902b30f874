# Sourced by setup/start/stop/run. Not executable on its own.
KAFKA_BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Kafka version fetched from Maven Central (the newest one known to be served here).
# If a fallback version was fetched (see setup), libs/.complete records it.
if [[ -z ${KAFKA_VERSION:-} ]]; then
    KAFKA_VERSION=4.4.0
    KAFKA_VERSION_DEFAULTED=1
    if [[ -f $KAFKA_BENCH_DIR/libs/.complete ]]; then
        KAFKA_VERSION="$(cut -d' ' -f1 "$KAFKA_BENCH_DIR/libs/.complete")"
    fi
fi
# Broker data: KRaft log dir, generated config, pid, server.log. Override with
# XO_KAFKA_DATA or --data-dir on start/stop/run.
XO_KAFKA_DATA="${XO_KAFKA_DATA:-$KAFKA_BENCH_DIR/data}"
KAFKA_PORT=19092
KAFKA_CONTROLLER_PORT=19093
KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
# Modest heaps: this box has 2 cores and other work on it.
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}"
HARNESS_HEAP_OPTS="${HARNESS_HEAP_OPTS:--Xms512m -Xmx1g}"
KAFKA_LIBS="$KAFKA_BENCH_DIR/libs"
HARNESS_JAR="$KAFKA_BENCH_DIR/target/xo-kafka-bench.jar"
CLIENT_JAVA_OPTS=(-Dlog4j2.configurationFile="$KAFKA_BENCH_DIR/log4j2-client.properties" -Djava.awt.headless=true)

die() { echo "kafka-bench: $*" >&2; exit 1; }

# The pid of the broker started from $XO_KAFKA_DATA, if it is still running.
kafka_pid() {
    local pidfile="$XO_KAFKA_DATA/kafka.pid" pid
    [[ -f $pidfile ]] || return 1
    pid="$(cat "$pidfile")"
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

libs_complete() {
    [[ -f $KAFKA_LIBS/.complete && "$(cat "$KAFKA_LIBS/.complete")" == "$KAFKA_VERSION $(pom_hash)" ]] &&
        [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar && -f $KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar &&
           -f $KAFKA_LIBS/kafka-clients-$KAFKA_VERSION.jar ]]
}

pom_hash() { sha256sum "$KAFKA_BENCH_DIR/pom.xml" | cut -c1-16; }

harness_fresh() {
    [[ -f $HARNESS_JAR ]] || return 1
    [[ -z "$(find "$KAFKA_BENCH_DIR/harness" "$KAFKA_BENCH_DIR/pom.xml" -newer "$HARNESS_JAR" -type f 2>/dev/null)" ]]
}

harness() {
    java $HARNESS_HEAP_OPTS "${CLIENT_JAVA_OPTS[@]}" -cp "$HARNESS_JAR:$KAFKA_LIBS/*" xo.bench.KafkaBench "$@"
}
