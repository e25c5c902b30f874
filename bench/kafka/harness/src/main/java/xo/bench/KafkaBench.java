package xo.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;

import org.HdrHistogram.Histogram;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.Callback;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Kafka side of the xo benchmark (issue 6). One workload per run; prints exactly one JSON line on
 * stdout (diagnostics go to stderr). See bench/README.md for what each workload measures.
 *
 * <p>Placement: record i of a run goes to partition (i mod P) of its topic; with two topics (produce
 * --mode txn) record i goes to topic (i mod 2), partition ((i / 2) mod P). Values are S bytes drawn
 * from a pool of 256 pre-generated random arrays; keys are null. MB means 10^6 bytes of values.
 */
public final class KafkaBench {
    static final double MB = 1_000_000.0;

    private static final List<String> OPTS = List.of(
            "bootstrap", "records", "record-size", "partitions", "records-per-txn", "mode", "rate",
            "txns", "warmup-records", "max-seconds", "topic-prefix", "name");

    private final Args args;
    private final String workload;
    private final String bootstrap;
    private final int recordSize;
    private final int partitions;
    private final double maxSeconds;
    private final List<String> createdTopics = new ArrayList<>();
    private Admin admin;
    private boolean brokerFsync;

    private KafkaBench(String workload, Args args) {
        this.workload = workload;
        this.args = args;
        this.bootstrap = args.str("bootstrap", "127.0.0.1:19092");
        this.recordSize = (int) args.num("record-size", 1024);
        this.partitions = (int) args.num("partitions", 8);
        this.maxSeconds = args.dbl("max-seconds", 120);
        if (recordSize < 16) {
            throw new IllegalArgumentException("--record-size must be at least 16");
        }
        if (partitions < 1) {
            throw new IllegalArgumentException("--partitions must be at least 1");
        }
    }

    public static void main(String[] argv) {
        if (argv.length == 0 || argv[0].equals("-h") || argv[0].equals("--help")) {
            System.err.println("usage: KafkaBench produce|commit|e2e|tiny|consume|ping [--records N] [--record-size S]"
                    + " [--partitions P] [--records-per-txn R] [--mode plain|idempotent|txn] [--rate R/s]"
                    + " [--txns N] [--warmup-records W] [--max-seconds T] [--bootstrap H:P] [--prop k=v]...");
            System.exit(2);
        }
        String workload = argv[0];
        Json out = new Json().put("system", "kafka").put("workload", workload);
        int rc = 0;
        KafkaBench bench = null;
        try {
            bench = new KafkaBench(workload, new Args(argv, 1, OPTS));
            if (bench.args.has("name")) {
                out.put("name", bench.args.str("name", ""));
            }
            bench.admin = Admin.create(bench.adminProps());
            bench.describeBroker(out);
            switch (workload) {
                case "ping" -> { }
                case "produce" -> bench.produce(out);
                case "commit" -> bench.commit(out);
                case "tiny" -> bench.tiny(out);
                case "e2e" -> bench.e2e(out);
                case "consume" -> bench.consume(out);
                default -> throw new IllegalArgumentException("unknown workload " + workload);
            }
            out.put("ok", true);
        } catch (Throwable t) {
            Throwable root = t;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            out.put("ok", false).put("error", root.getClass().getSimpleName() + ": " + root.getMessage());
            t.printStackTrace(System.err);
            rc = 1;
        } finally {
            if (bench != null) {
                bench.cleanup();
            }
        }
        System.out.println(out);
        System.out.flush();
        // Kafka client threads may linger; results are out, so leave now.
        Runtime.getRuntime().halt(rc);
    }

    // ---------------------------------------------------------------- setup

    private Properties adminProps() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        return p;
    }

    private void applyProps(Properties p) {
        for (String kv : args.props()) {
            int eq = kv.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("--prop wants key=value, got " + kv);
            }
            p.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
    }

    /** Producer config; mode is plain (acks=all, no idempotence), idempotent or txn. */
    private KafkaProducer<byte[], byte[]> producer(String mode) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        switch (mode) {
            case "plain" -> p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
            case "idempotent" -> p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            case "txn" -> {
                p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
                p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "xo-bench-" + workload + "-" + UUID.randomUUID());
            }
            default -> throw new IllegalArgumentException("--mode must be plain, idempotent or txn, got " + mode);
        }
        applyProps(p);
        KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);
        if (mode.equals("txn")) {
            producer.initTransactions();
        }
        return producer;
    }

    private KafkaConsumer<byte[], byte[]> consumer() {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        applyProps(p);
        return new KafkaConsumer<>(p);
    }

    /** Fresh topics of P partitions, RF 1, deleted again at exit unless --keep-topics. */
    private List<String> createTopics(int count) throws Exception {
        return createTopics(count, Map.of());
    }

    private List<String> createTopics(int count, Map<String, String> configs) throws Exception {
        String prefix = args.str("topic-prefix", "xo-bench");
        long stamp = System.currentTimeMillis();
        List<NewTopic> topics = new ArrayList<>();
        List<String> names = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            String name = prefix + "-" + workload + "-" + stamp + "-" + i;
            topics.add(new NewTopic(name, partitions, (short) 1).configs(configs));
            names.add(name);
        }
        admin.createTopics(topics).all().get(30, TimeUnit.SECONDS);
        createdTopics.addAll(names);
        // Wait until every partition has a leader as seen through metadata.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            boolean ready = admin.describeTopics(names).allTopicNames().get(30, TimeUnit.SECONDS).values().stream()
                    .allMatch(d -> d.partitions().size() == partitions
                            && d.partitions().stream().allMatch(pi -> pi.leader() != null && !pi.leader().isEmpty()));
            if (ready) {
                break;
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("topics " + names + " got no leaders within 30 s");
            }
            Thread.sleep(50);
        }
        return names;
    }

    private void cleanup() {
        if (admin == null) {
            return;
        }
        try {
            if (!createdTopics.isEmpty() && !args.flag("keep-topics")) {
                admin.deleteTopics(createdTopics).all().get(30, TimeUnit.SECONDS);
            }
        } catch (Exception e) {
            System.err.println("warning: could not delete topics " + createdTopics + ": " + e);
        }
        admin.close(Duration.ofSeconds(5));
    }

    /** Reports the broker's version and whether it runs with per-message flush (fsync mode). */
    private void describeBroker(Json out) throws Exception {
        String nodeId = String.valueOf(admin.describeCluster().nodes().get(30, TimeUnit.SECONDS).iterator().next().id());
        ConfigResource res = new ConfigResource(ConfigResource.Type.BROKER, nodeId);
        Map<ConfigResource, Config> configs = admin.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS);
        ConfigEntry flush = configs.get(res).get("log.flush.interval.messages");
        String flushMessages = flush == null ? null : flush.value();
        out.put("kafka_version", clientVersion());
        brokerFsync = "1".equals(flushMessages);
        out.put("fsync", brokerFsync);
        if (args.flag("fsync") && !"1".equals(flushMessages)) {
            throw new IllegalStateException("--fsync given but the broker runs with log.flush.interval.messages="
                    + flushMessages + " (start it with ./start --fsync)");
        }
    }

    private static String clientVersion() {
        try (java.io.InputStream in = KafkaProducer.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            Properties p = new Properties();
            if (in != null) {
                p.load(in);
            }
            return p.getProperty("version", "unknown");
        } catch (java.io.IOException e) {
            return "unknown";
        }
    }

    // --------------------------------------------------------------- values

    private byte[][] valuePool() {
        Random rnd = new Random(0x5EEDL);
        byte[][] pool = new byte[256][recordSize];
        for (byte[] v : pool) {
            rnd.nextBytes(v);
        }
        return pool;
    }

    /** Counts send completions and keeps the first failure. */
    private static final class Acks implements Callback {
        final LongAdder acked = new LongAdder();
        final AtomicReference<Exception> failure = new AtomicReference<>();
        final AtomicLong failed = new AtomicLong();

        @Override
        public void onCompletion(org.apache.kafka.clients.producer.RecordMetadata md, Exception e) {
            if (e != null) {
                failed.incrementAndGet();
                failure.compareAndSet(null, e);
            } else {
                acked.increment();
            }
        }

        void check() throws Exception {
            Exception e = failure.get();
            if (e != null) {
                throw new IllegalStateException(failed.get() + " sends failed", e);
            }
        }
    }

    private static void putPercentiles(Json out, String prefix, Histogram h) {
        // Histograms hold microseconds; report milliseconds.
        out.put(prefix + "_p50_ms", h.getValueAtPercentile(50) / 1000.0);
        out.put(prefix + "_p99_ms", h.getValueAtPercentile(99) / 1000.0);
        out.put(prefix + "_p999_ms", h.getValueAtPercentile(99.9) / 1000.0);
        out.put(prefix + "_max_ms", h.getMaxValue() / 1000.0);
        out.put(prefix + "_mean_ms", h.getMean() / 1000.0);
    }

    private static Histogram histogram() {
        return new Histogram(TimeUnit.SECONDS.toMicros(120), 3);
    }

    private static long micros(long nanos) {
        return Math.max(1, nanos / 1000);
    }

    // ------------------------------------------------------------ workloads

    /**
     * (a) Produce throughput. plain: acks=all, idempotence off; idempotent; txn: R records per
     * transaction spread over two topics. Timed from the first send to the last ack / commit.
     */
    private void produce(Json out) throws Exception {
        String mode = args.str("mode", "plain");
        long records = args.num("records", 100_000);
        int perTxn = (int) args.num("records-per-txn", 100);
        long warmup = args.num("warmup-records", Math.min(records / 10, 20_000));
        boolean txn = mode.equals("txn");
        List<String> topics = createTopics(txn ? 2 : 1);
        byte[][] pool = valuePool();
        out.put("mode", mode).put("record_size", recordSize).put("partitions", partitions)
                .put("topics", topics.size());
        if (txn) {
            out.put("records_per_txn", perTxn);
        }
        try (KafkaProducer<byte[], byte[]> producer = producer(mode)) {
            Acks acks = new Acks();
            // Warm-up on the same topics, untimed, so the JIT and connections are warm.
            sendBatch(producer, topics, pool, 0, warmup, txn ? perTxn : 0, acks, Long.MAX_VALUE);
            acks.check();
            Acks timed = new Acks();
            long deadline = System.nanoTime() + (long) (maxSeconds * 1e9);
            long t0 = System.nanoTime();
            long sent = sendBatch(producer, topics, pool, warmup, records, txn ? perTxn : 0, timed, deadline);
            long elapsed = System.nanoTime() - t0;
            timed.check();
            double secs = elapsed / 1e9;
            out.put("warmup_records", warmup).put("records", sent).put("elapsed_s", secs)
                    .put("records_per_s", sent / secs).put("mb_per_s", sent * (double) recordSize / MB / secs)
                    .put("truncated", sent < records);
            if (txn) {
                long txns = (sent + perTxn - 1) / perTxn;
                out.put("txns", txns).put("txn_per_s", txns / secs);
            }
        }
    }

    /**
     * Sends {@code count} records numbered from {@code first}; with perTxn > 0 wraps every perTxn of
     * them in a transaction. Returns when all are acknowledged (flushed or committed), or stops early
     * at a transaction / 1000-record boundary past the deadline. Returns the number sent.
     */
    private long sendBatch(KafkaProducer<byte[], byte[]> producer, List<String> topics, byte[][] pool,
                           long first, long count, int perTxn, Acks acks, long deadline) {
        int nTopics = topics.size();
        long sent = 0;
        while (sent < count) {
            if (System.nanoTime() > deadline) {
                break;
            }
            long chunk = perTxn > 0 ? Math.min(perTxn, count - sent) : Math.min(1000, count - sent);
            if (perTxn > 0) {
                producer.beginTransaction();
            }
            for (long j = 0; j < chunk; j++) {
                long i = first + sent + j;
                String topic = topics.get((int) (i % nTopics));
                int partition = (int) ((i / nTopics) % partitions);
                producer.send(new ProducerRecord<>(topic, partition, null, pool[(int) (i & 255)]), acks);
            }
            if (perTxn > 0) {
                producer.commitTransaction();
            }
            sent += chunk;
        }
        if (perTxn == 0) {
            producer.flush();
        }
        return sent;
    }

    /**
     * (b) Commit latency: back-to-back transactions of R (default 10) records on one topic; the
     * records are flushed first, then commitTransaction (EndTxn until the client returns) is timed.
     */
    private void commit(Json out) throws Exception {
        int perTxn = (int) args.num("records-per-txn", 10);
        long txns = args.has("txns") ? args.num("txns", 0) : args.num("records", 20_000) / perTxn;
        long warmup = args.num("warmup-records", 100) / Math.max(1, perTxn);
        out.put("records_per_txn", perTxn).put("record_size", recordSize).put("partitions", partitions);
        String topic = createTopics(1).get(0);
        byte[][] pool = valuePool();
        Histogram commitH = histogram();
        Histogram txnH = histogram();
        try (KafkaProducer<byte[], byte[]> producer = producer("txn")) {
            Acks acks = new Acks();
            long i = 0;
            long done = 0;
            long deadline = Long.MAX_VALUE;
            long t0 = 0;
            for (long t = 0; t < warmup + txns; t++) {
                if (t == warmup) {
                    t0 = System.nanoTime();
                    deadline = t0 + (long) (maxSeconds * 1e9);
                }
                if (System.nanoTime() > deadline) {
                    break;
                }
                long begin = System.nanoTime();
                producer.beginTransaction();
                for (int j = 0; j < perTxn; j++, i++) {
                    producer.send(new ProducerRecord<>(topic, (int) (i % partitions), null, pool[(int) (i & 255)]), acks);
                }
                producer.flush();
                long c0 = System.nanoTime();
                producer.commitTransaction();
                long end = System.nanoTime();
                if (t >= warmup) {
                    commitH.recordValue(micros(end - c0));
                    txnH.recordValue(micros(end - begin));
                    done++;
                }
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            acks.check();
            out.put("txns", done).put("elapsed_s", secs).put("txn_per_s", done / secs).put("truncated", done < txns);
            putPercentiles(out, "commit", commitH);
            putPercentiles(out, "txn", txnH);
        }
    }

    /** (d) Tiny transactions: one record per transaction, serial, one producer. */
    private void tiny(Json out) throws Exception {
        long txns = args.has("txns") ? args.num("txns", 0) : args.num("records", 5_000);
        long warmup = args.num("warmup-records", 100);
        out.put("records_per_txn", 1).put("record_size", recordSize).put("partitions", partitions);
        String topic = createTopics(1).get(0);
        byte[][] pool = valuePool();
        Histogram txnH = histogram();
        try (KafkaProducer<byte[], byte[]> producer = producer("txn")) {
            Acks acks = new Acks();
            long done = 0;
            long t0 = 0;
            long deadline = Long.MAX_VALUE;
            for (long t = 0; t < warmup + txns; t++) {
                if (t == warmup) {
                    t0 = System.nanoTime();
                    deadline = t0 + (long) (maxSeconds * 1e9);
                }
                long begin = System.nanoTime();
                if (begin > deadline) {
                    break;
                }
                producer.beginTransaction();
                producer.send(new ProducerRecord<>(topic, (int) (t % partitions), null, pool[(int) (t & 255)]), acks);
                producer.commitTransaction();
                if (t >= warmup) {
                    txnH.recordValue(micros(System.nanoTime() - begin));
                    done++;
                }
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            acks.check();
            out.put("txns", done).put("elapsed_s", secs).put("txn_per_s", done / secs).put("truncated", done < txns);
            putPercentiles(out, "txn", txnH);
        }
    }

    /**
     * (c) End-to-end latency: a producer sends at a fixed rate of records/s, as transactions of R
     * records started every R/rate s (records of one transaction sent back to back, then commit),
     * or, with --mode plain/idempotent, one record every 1/rate s; a read_committed consumer in
     * the same process measures now - send time, the send time being System.nanoTime() taken just
     * before send() and carried in the first 8 bytes of the value. Records of the first
     * transactions up to --warmup-records are not counted.
     */
    private void e2e(Json out) throws Exception {
        String mode = args.str("mode", "txn");
        long records = args.num("records", 10_000);
        double rate = args.dbl("rate", 1000);
        int perTxn = mode.equals("txn") ? (int) args.num("records-per-txn", 10) : 0;
        long warmupAsked = args.num("warmup-records", Math.min(records / 10, (long) rate));
        long warmup = perTxn > 0 ? (warmupAsked + perTxn - 1) / perTxn * perTxn : warmupAsked; // whole txns
        long total = warmup + records;
        out.put("mode", mode).put("rate", rate).put("record_size", recordSize).put("partitions", partitions);
        if (perTxn > 0) {
            out.put("records_per_txn", perTxn);
        }
        String topic = createTopics(1).get(0);
        byte[][] pool = valuePool();
        Histogram lat = histogram();
        AtomicLong received = new AtomicLong();
        AtomicReference<Throwable> consumerError = new AtomicReference<>();
        CountDownLatch ready = new CountDownLatch(1);
        CountDownLatch finished = new CountDownLatch(1);
        long hardDeadline = System.nanoTime() + (long) ((maxSeconds + 30) * 1e9);

        Thread consumerThread = new Thread(() -> {
            try (KafkaConsumer<byte[], byte[]> consumer = consumer()) {
                List<TopicPartition> tps = new ArrayList<>();
                for (int p = 0; p < partitions; p++) {
                    tps.add(new TopicPartition(topic, p));
                }
                consumer.assign(tps);
                consumer.seekToEnd(tps);
                for (TopicPartition tp : tps) {
                    consumer.position(tp, Duration.ofSeconds(30));
                }
                ready.countDown();
                while (received.get() < total && System.nanoTime() < hardDeadline) {
                    ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(100));
                    long now = System.nanoTime();
                    for (ConsumerRecord<byte[], byte[]> r : recs) {
                        byte[] v = r.value();
                        long sentAt = getLong(v, 0);
                        long seq = getLong(v, 8);
                        if (seq >= warmup) {
                            lat.recordValue(Math.min(lat.getHighestTrackableValue(), micros(now - sentAt)));
                        }
                        received.incrementAndGet();
                    }
                }
            } catch (Throwable t) {
                consumerError.set(t);
                ready.countDown();
            } finally {
                finished.countDown();
            }
        }, "e2e-consumer");
        consumerThread.setDaemon(true);
        consumerThread.start();
        ready.await();
        if (consumerError.get() != null) {
            throw new IllegalStateException("consumer failed", consumerError.get());
        }

        long intervalNs = (long) (1e9 / rate);
        long deadline = System.nanoTime() + (long) (maxSeconds * 1e9);
        long sent = 0;
        double measuredSecs;
        try (KafkaProducer<byte[], byte[]> producer = producer(mode)) {
            Acks acks = new Acks();
            long start = System.nanoTime();
            long timedStart = -1;
            long lastSlotEnd = start;
            // A transaction (or, without transactions, a record) is due every chunk/rate seconds;
            // its records go out back to back, then it commits.
            while (sent < total && System.nanoTime() < deadline) {
                long chunk = perTxn > 0 ? Math.min(perTxn, total - sent) : 1;
                long due = start + sent * intervalNs;
                long now;
                while ((now = System.nanoTime()) < due) {
                    java.util.concurrent.locks.LockSupport.parkNanos(due - now);
                }
                if (timedStart < 0 && sent + chunk > warmup) {
                    timedStart = due; // the schedule's slot, so a late start does not inflate the rate
                }
                if (perTxn > 0) {
                    producer.beginTransaction();
                }
                for (long j = 0; j < chunk; j++, sent++) {
                    byte[] v = pool[(int) (sent & 255)].clone();
                    putLong(v, 0, System.nanoTime());
                    putLong(v, 8, sent);
                    producer.send(new ProducerRecord<>(topic, (int) (sent % partitions), null, v), acks);
                }
                if (perTxn > 0) {
                    producer.commitTransaction();
                }
                lastSlotEnd = now + chunk * intervalNs;
            }
            producer.flush();
            measuredSecs = timedStart < 0 ? Double.NaN : (lastSlotEnd - timedStart) / 1e9;
            acks.check();
        }
        finished.await(Math.max(1, (hardDeadline - System.nanoTime()) / 1_000_000), TimeUnit.MILLISECONDS);
        if (consumerError.get() != null) {
            throw new IllegalStateException("consumer failed", consumerError.get());
        }
        long got = received.get();
        if (got < sent) {
            throw new IllegalStateException("consumer received " + got + " of " + sent + " records");
        }
        double achieved = (sent - warmup) / measuredSecs;
        out.put("warmup_records", warmup).put("records", sent - warmup)
                .put("achieved_rate", achieved).put("saturated", achieved < 0.95 * rate)
                .put("truncated", sent < total);
        putPercentiles(out, "e2e", lat);
    }

    /**
     * (e) Consume throughput, read_committed, from a backlog of N records written first in
     * transactions of R (default 1000) records over P partitions. Timed from the first poll to the
     * arrival of the last record. On a broker in fsync mode the backlog topic gets Kafka's default
     * flush settings (no per-message flush) so that building it does not take minutes; reading is
     * the same either way. Transaction markers and the transaction log are still flushed.
     */
    private void consume(Json out) throws Exception {
        long records = args.num("records", 100_000);
        int perTxn = (int) args.num("records-per-txn", 1000);
        out.put("record_size", recordSize).put("partitions", partitions).put("backlog_records_per_txn", perTxn)
                .put("backlog_flush_per_message", false);
        Map<String, String> noFlush = brokerFsync
                ? Map.of("flush.messages", String.valueOf(Long.MAX_VALUE), "flush.ms", String.valueOf(Long.MAX_VALUE))
                : Map.of();
        List<String> topics = createTopics(1, noFlush);
        String topic = topics.get(0);
        byte[][] pool = valuePool();
        long p0 = System.nanoTime();
        try (KafkaProducer<byte[], byte[]> producer = producer("txn")) {
            Acks acks = new Acks();
            long n = sendBatch(producer, topics, pool, 0, records, perTxn, acks, Long.MAX_VALUE);
            acks.check();
            if (n != records) {
                throw new IllegalStateException("backlog short: " + n);
            }
        }
        double backlogSecs = (System.nanoTime() - p0) / 1e9;
        long deadline = System.nanoTime() + (long) (maxSeconds * 1e9);
        long count = 0;
        long bytes = 0;
        long t0;
        long tEnd;
        try (KafkaConsumer<byte[], byte[]> consumer = consumer()) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            t0 = System.nanoTime();
            tEnd = t0;
            while (count < records && System.nanoTime() < deadline) {
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    bytes += r.value().length;
                    count++;
                }
                if (!recs.isEmpty()) {
                    tEnd = System.nanoTime();
                }
            }
        }
        double secs = (tEnd - t0) / 1e9;
        out.put("backlog_produce_s", backlogSecs).put("records", count).put("elapsed_s", secs)
                .put("records_per_s", count / secs).put("mb_per_s", bytes / MB / secs)
                .put("truncated", count < records);
    }

    private static long getLong(byte[] b, int off) {
        long v = 0;
        for (int i = 0; i < 8; i++) {
            v = (v << 8) | (b[off + i] & 0xFF);
        }
        return v;
    }

    private static void putLong(byte[] b, int off, long v) {
        for (int i = 7; i >= 0; i--) {
            b[off + i] = (byte) v;
            v >>>= 8;
        }
    }
}
