// bench/caffeine/CaffeineBench.java: Caffeine on mc_compare's Zipf workloads, run the way mc_compare
// runs its own systems; alone (JSON records on stdout) or as mc_compare's --peer between its runs.

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public final class CaffeineBench {
    static final String SYSTEM = "caffeine";
    // bench/compare.h: the cache bound, preloaded with keys CACHE_ENTRIES-1..0.
    static final int CACHE_ENTRIES = 100_000;
    static final String GETPUT = "zipf-getput", READONLY = "zipf-readonly";

    private CaffeineBench() {}

    // ---------------------------------------------------------------------------------------------
    // The system under test.

    // Maintenance (draining the read and write buffers, eviction) runs on the thread whose request
    // triggered it, not on ForkJoinPool.commonPool(): with the default executor a 1-thread run
    // would get a second core for its evictions, and "threads" would not mean what it means for
    // the other systems, which evict on the requesting thread. --common-pool measures the default.
    static boolean commonPool = false;

    static Cache<Long, Long> newCache() {
        final Caffeine<Object, Object> b = Caffeine.newBuilder().maximumSize(CACHE_ENTRIES);
        return (commonPool ? b : b.executor(Runnable::run)).build();
    }

    // A get, and on a miss a put of the key as its value when fill; 1 when the get hit. The key is
    // boxed on each request, as a caller holding a long does (Long.valueOf shares 0..127 only).
    static int request(Cache<Long, Long> cache, int key, boolean fill) {
        final Long k = Long.valueOf(key);
        final Long v = cache.getIfPresent(k);
        if (v != null) {
            if (v.longValue() != key) throw new IllegalStateException("key " + key + " returned value " + v);
            return 1;
        }
        if (fill) cache.put(k, k);
        return 0;
    }

    // ---------------------------------------------------------------------------------------------
    // The timed loop: bench/harness.h's zipf_worker and run_window, step for step.

    static final int WAIT = 0, WARM = 1, MEASURE = 2, STOP = 3;

    static final class Window {
        long ops, hits;
        double secs;
        long[] starts, allOps;  // where each thread began, and its requests including the warm-up
    }

    static Window runWindow(Cache<Long, Long> cache, int[] trace, int nthreads, boolean fill, double warm,
                            double window) throws InterruptedException {
        final AtomicInteger ready = new AtomicInteger();
        final AtomicInteger phase = new AtomicInteger(WAIT);
        final int len = trace.length;
        final long[][] counts = new long[nthreads][];  // ops, hits, all ops; written once at the end
        final Throwable[] failed = new Throwable[1];
        final Window w = new Window();
        w.starts = new long[nthreads];
        w.allOps = new long[nthreads];
        final Thread[] threads = new Thread[nthreads];
        for (int t = 0; t < nthreads; t++) {
            final int start = (int) ((long) t * len / nthreads);
            final int slot = t;
            w.starts[t] = start;
            threads[t] = new Thread(() -> {
                ready.incrementAndGet();
                while (phase.get() == WAIT) Thread.onSpinWait();
                long ops = 0, hits = 0, warmOps = 0;
                int seen = WARM;
                int i = start;
                try {
                    for (;;) {
                        for (int b = 0; b < 64; b++) {
                            hits += request(cache, trace[i], fill);
                            if (++i == len) i = 0;
                        }
                        ops += 64;
                        // Read once per batch, and opaque (C++'s relaxed): the flag's line is not
                        // pulled on every request, and a change is still seen at the next batch.
                        final int p = phase.getOpaque();
                        if (p != seen) {
                            // Descheduled through the whole window: all of it was warm-up.
                            if (p == STOP && seen == MEASURE) break;
                            warmOps += ops;
                            ops = hits = 0;
                            if (p == STOP) break;
                            seen = p;
                        }
                    }
                } catch (Throwable e) {
                    synchronized (failed) {
                        failed[0] = e;
                    }
                }
                counts[slot] = new long[] {ops, hits, warmOps + ops};
            }, "zipf-" + t);
            threads[t].start();
        }
        // Release them together only when every one runs, so none starts alone.
        while (ready.get() < nthreads) Thread.yield();
        phase.set(WARM);
        sleepFor(warm);
        final long t0 = System.nanoTime();
        phase.set(MEASURE);
        sleepFor(window);
        final long t1 = System.nanoTime();
        phase.set(STOP);
        for (Thread th : threads) th.join();
        synchronized (failed) {
            if (failed[0] != null) throw new IllegalStateException("a request failed: " + failed[0], failed[0]);
        }
        for (int t = 0; t < nthreads; t++) {
            w.ops += counts[t][0];
            w.hits += counts[t][1];
            w.allOps[t] = counts[t][2];
        }
        w.secs = (t1 - t0) / 1e9;
        return w;
    }

    static void sleepFor(double seconds) throws InterruptedException {
        final long end = System.nanoTime() + (long) (seconds * 1e9);
        for (long left; (left = end - System.nanoTime()) > 0;) Thread.sleep(left / 1_000_000, (int) (left % 1_000_000));
    }

    // bench/harness.h's trace_positions_met: did two threads' positions in the trace come within
    // margin requests of each other (one replaying what another had just requested)?
    static boolean positionsMet(Window w, long len, long margin) {
        for (int i = 0; i < w.starts.length; i++) {
            for (int j = i + 1; j < w.starts.length; j++) {
                final long d0 = w.starts[j] - w.starts[i];
                final long d1 = d0 + w.allOps[j] - w.allOps[i];
                final long lo = Math.min(d0, d1) - margin, hi = Math.max(d0, d1) + margin;
                final long k = lo >= 0 ? (lo + len - 1) / len : -((-lo) / len);
                if (k * len <= hi) return true;
            }
        }
        return false;
    }

    // ---------------------------------------------------------------------------------------------
    // One measurement, as mc_compare's run_zipf: a new cache, the preload, the timed window.

    static final class Result {
        String workload;
        int threads;
        double opsPerSec, hitRatio;
        boolean overlap;
    }

    static Result runZipf(int[] trace, String workload, int nthreads, double warm, double window)
            throws InterruptedException {
        final boolean fill = workload.equals(GETPUT);
        final Cache<Long, Long> cache = newCache();
        // Hottest key last, so that it is the most recent, as for every other system.
        for (long k = CACHE_ENTRIES - 1; k >= 0; k--) cache.put(k, k);
        cache.cleanUp();
        // The previous run's cache is garbage now: collect it here rather than in this window.
        System.gc();
        final Window w = runWindow(cache, trace, nthreads, fill, warm, window);
        final Result r = new Result();
        r.workload = workload;
        r.threads = nthreads;
        r.opsPerSec = w.ops / w.secs;
        r.hitRatio = w.ops > 0 ? (double) w.hits / w.ops : Double.NaN;
        // Replays from further back than an LRU's reach (about 330,000 requests) gain little.
        r.overlap = fill && positionsMet(w, trace.length, 3L * CACHE_ENTRIES);
        return r;
    }

    // Untimed runs of both request shapes, seconds each (half at 1 thread, half at 2: contended
    // paths are compiled too), so that the first measurement is not the one that pays for
    // compiling Caffeine's code; mc_compare's systems are compiled ahead of time.
    static void warmJit(int[] trace, double seconds) throws InterruptedException {
        if (seconds <= 0) return;
        for (String workload : new String[] {GETPUT, READONLY})
            for (int t = 1; t <= 2; t++) runZipf(trace, workload, t, 0.0, seconds / 2);
    }

    // Between its runs the JVM must be idle, as the other systems' runs are timed then: wait until
    // the JIT compiler has had nothing to do for 100 ms (at most 5 s) before answering.
    static void awaitJitIdle() throws InterruptedException {
        final CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        if (jit == null || !jit.isCompilationTimeMonitoringSupported()) return;
        final long end = System.nanoTime() + 5_000_000_000L;
        long before = jit.getTotalCompilationTime();
        while (System.nanoTime() < end) {
            Thread.sleep(100);
            final long now = jit.getTotalCompilationTime();
            if (now == before) return;
            before = now;
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Output: mc_compare's results.json record, field for field (bench/report.cc, print_json).

    static String number(double v, String format) {
        return Double.isNaN(v) ? "null" : String.format(Locale.ROOT, format, v);
    }

    static String record(Result r) {
        return String.format(Locale.ROOT,
                "{\"system\": \"%s\", \"policy\": null, \"workload\": \"%s\", \"threads\": %d, \"cache_size\": %d, "
                        + "\"ops_per_sec\": %s, \"hit_ratio\": %s, \"bytes_per_entry\": null}",
                SYSTEM, r.workload, r.threads, CACHE_ENTRIES, number(r.opsPerSec, "%.0f"), number(r.hitRatio, "%.6f"));
    }

    // What Caffeine and which JVM: the version from the jar's file name (Debian's jar carries none
    // in its manifest), and the flags the JVM was started with.
    static String about() {
        String version = Caffeine.class.getPackage().getImplementationVersion();
        try {
            final Path jar = Paths.get(Caffeine.class.getProtectionDomain().getCodeSource().getLocation().toURI())
                    .toRealPath();
            final Matcher m = Pattern.compile("caffeine-([0-9][0-9A-Za-z.]*)\\.jar").matcher(jar.getFileName().toString());
            if (m.matches()) version = m.group(1);
            version = (version == null ? "version unknown" : version) + " (" + jar + ")";
        } catch (Exception e) {
            if (version == null) version = "version unknown";
        }
        final List<String> flags = ManagementFactory.getRuntimeMXBean().getInputArguments();
        return String.format("Caffeine %s on %s %s, JVM flags: %s", version, System.getProperty("java.vm.name"),
                System.getProperty("java.vm.version"), flags.isEmpty() ? "none" : String.join(" ", flags));
    }

    // ---------------------------------------------------------------------------------------------
    // --serve: mc_compare's side of the protocol is bench/peer.h, which describes it.

    static int serve() throws Exception {
        final BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        int[] trace = null;
        for (String line; (line = in.readLine()) != null;) {
            final String[] f = line.trim().split("\\s+");
            try {
                if (f[0].equals("trace") && f.length == 3) {
                    final int len = Integer.parseInt(f[1]);
                    if (len < 64) throw new IllegalArgumentException("a trace of " + len + " requests is too short");
                    trace = ZipfTrace.trace(len);
                    warmJit(trace, Double.parseDouble(f[2]));
                    awaitJitIdle();
                    reply(String.format("ready %016x %s %s", ZipfTrace.checksum(trace), SYSTEM, about()));
                } else if (f[0].equals("run") && f.length == 5 && trace != null) {
                    final String workload = f[1];
                    if (!workload.equals(GETPUT) && !workload.equals(READONLY))
                        throw new IllegalArgumentException("unknown workload " + workload);
                    final int threads = Integer.parseInt(f[2]);
                    if (threads < 1 || threads > 1024) throw new IllegalArgumentException("bad thread count " + threads);
                    final Result r = runZipf(trace, workload, threads, Double.parseDouble(f[3]), Double.parseDouble(f[4]));
                    awaitJitIdle();
                    reply("record " + (r.overlap ? 1 : 0) + " " + record(r));
                } else if (f[0].equals("quit")) {
                    return 0;
                } else {
                    throw new IllegalArgumentException("unexpected request '" + line + "'");
                }
            } catch (Exception e) {
                reply("error " + String.valueOf(e).replace('\n', ' '));
                return 1;
            }
        }
        return 0;  // mc_compare went away
    }

    static void reply(String line) {
        System.out.println(line);
        System.out.flush();
    }

    // ---------------------------------------------------------------------------------------------
    // Alone: both workloads at each thread count, repeated, the median record of each on stdout.

    static Result median(List<Result> runs) {
        final double[] ops = runs.stream().mapToDouble(r -> r.opsPerSec).sorted().toArray();
        final int n = ops.length;
        final double mid = n % 2 == 1 ? ops[n / 2] : (ops[n / 2 - 1] + ops[n / 2]) / 2;
        // The run nearest the median lends its hit ratio, as in mc_compare's median_rows.
        Result near = runs.get(0);
        for (Result r : runs) if (Math.abs(r.opsPerSec - mid) < Math.abs(near.opsPerSec - mid)) near = r;
        final Result m = new Result();
        m.workload = near.workload;
        m.threads = near.threads;
        m.opsPerSec = mid;
        m.hitRatio = near.hitRatio;
        for (Result r : runs) m.overlap |= r.overlap;
        return m;
    }

    static int standalone(boolean quick, double seconds, int[] threadCounts, int repeat) throws Exception {
        final double warm = Math.min(0.5, seconds / 4);
        final int len = quick ? ZipfTrace.QUICK_REQUESTS : ZipfTrace.REQUESTS;
        final long t0 = System.nanoTime();
        final int[] trace = ZipfTrace.trace(len);
        System.err.printf("%s%s%n%s%n", about(), commonPool ? "; maintenance on ForkJoinPool.commonPool()" : "",
                ZipfTrace.describe(trace));
        warmJit(trace, Math.max(0.5, 2 * warm));
        awaitJitIdle();
        final List<Result> out = new ArrayList<>();
        for (String workload : new String[] {GETPUT, READONLY}) {
            for (int t : threadCounts) {
                final List<Result> runs = new ArrayList<>();
                for (int rep = 1; rep <= repeat; rep++) {
                    System.err.printf(Locale.ROOT, "[%6.1fs] %s %s %d thread%s%s ... ", (System.nanoTime() - t0) / 1e9,
                            workload, SYSTEM, t, t == 1 ? "" : "s",
                            repeat > 1 ? String.format(" (run %d/%d)", rep, repeat) : "");
                    final Result r = runZipf(trace, workload, t, warm, seconds);
                    System.err.printf(Locale.ROOT, "%.2f M ops/s, hit ratio %.4f%s%n", r.opsPerSec / 1e6, r.hitRatio,
                            r.overlap ? " (threads met in the trace: hit ratio may be inflated)" : "");
                    runs.add(r);
                }
                out.add(median(runs));
            }
        }
        System.out.println("[");
        for (int i = 0; i < out.size(); i++) System.out.println("  " + record(out.get(i)) + (i + 1 < out.size() ? "," : ""));
        System.out.println("]");
        return 0;
    }

    static void usage(java.io.PrintStream out) {
        out.print(String.join("\n",
                "usage: java -cp CLASSES:caffeine.jar CaffeineBench [--quick] [--seconds S] [--threads LIST] [--repeat N]",
                "       java ... CaffeineBench --check [--quick]",
                "       java ... CaffeineBench --serve",
                "",
                "Caffeine (maximumSize 100,000, maintenance on the requesting thread) on mc_compare's Zipf",
                "workloads: zipf-getput (get, put on a miss) and zipf-readonly (gets), the same trace, preload,",
                "window and thread semantics as mc_compare's own systems.",
                "  (default)       run both workloads, print one results.json record per workload and",
                "                  thread count (the median of its runs) on stdout, progress on stderr",
                "  --quick         2^20-request trace, 0.3 s windows, one run each (as mc_compare --quick)",
                "  --seconds S     measuring window per run (default 2, 0.3 with --quick); warm-up min(0.5, S/4)",
                "  --threads LIST  comma-separated thread counts (default 1,2)",
                "  --repeat N      runs of each measurement (default 3, 1 with --quick)",
                "  --common-pool   maintenance on ForkJoinPool.commonPool(), Caffeine's default, instead of",
                "                  on the requesting thread (not what mc_compare --peer measures)",
                "  --check         print the trace's first keys and checksum, as mc_compare --verbose does",
                "  --serve         be mc_compare's --peer: requests on stdin, answers on stdout (bench/peer.h)",
                ""));
    }

    public static void main(String[] args) throws Exception {
        boolean quick = false, check = false, serve = false;
        double seconds = 0;
        int repeat = 0;
        int[] threads = {1, 2};
        try {
            for (int i = 0; i < args.length; i++) {
                switch (args[i]) {
                    case "--quick": quick = true; break;
                    case "--check": check = true; break;
                    case "--serve": serve = true; break;
                    case "--common-pool": commonPool = true; break;
                    case "--seconds": seconds = Double.parseDouble(args[++i]); break;
                    case "--repeat": repeat = Integer.parseInt(args[++i]); break;
                    case "--threads":
                        threads = Arrays.stream(args[++i].split(",")).mapToInt(Integer::parseInt).toArray();
                        break;
                    case "--help": case "-h": usage(System.out); return;
                    default: throw new IllegalArgumentException("unknown argument '" + args[i] + "'");
                }
            }
            if (!(seconds >= 0 && seconds <= 3600) || repeat < 0 || repeat > 100 || threads.length == 0
                    || Arrays.stream(threads).anyMatch(t -> t < 1 || t > 1024))
                throw new IllegalArgumentException("bad --seconds, --repeat or --threads value");
        } catch (RuntimeException e) {
            System.err.println("CaffeineBench: " + e.getMessage());
            usage(System.err);
            System.exit(2);
        }
        if (serve && commonPool) {
            System.err.println("CaffeineBench: --common-pool is for runs alone, not --serve");
            System.exit(2);
        }
        if (serve) System.exit(serve());
        if (check) {
            final int[] trace = ZipfTrace.trace(quick ? ZipfTrace.QUICK_REQUESTS : ZipfTrace.REQUESTS);
            System.out.println(ZipfTrace.describe(trace));
            System.out.printf(Locale.ROOT, "share of requests with key >= %d: %.4f (expected about 0.170)%n", CACHE_ENTRIES,
                    ZipfTrace.shareAtOrAbove(trace, CACHE_ENTRIES));
            return;
        }
        if (seconds == 0) seconds = quick ? 0.3 : 2.0;
        if (repeat == 0) repeat = quick ? 1 : 3;
        System.exit(standalone(quick, seconds, threads, repeat));
    }
}
