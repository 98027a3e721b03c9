// bench/caffeine/ZipfTrace.java: the project's Zipf request trace (bench/zipf.h) generated on the
// JVM, key for key the one mc_compare generates: splitmix64 seeded 42, s = 0.99 over 1,000,000 keys.

final class ZipfTrace {
    // The workload definition (shared/data/README.md); bench/zipf.h holds the same constants.
    static final long SEED = 42;
    static final double EXPONENT = 0.99;
    static final int KEYS = 1_000_000;
    static final int REQUESTS = 1 << 24;
    static final int QUICK_REQUESTS = 1 << 20;

    private ZipfTrace() {}

    // splitmix64 (Steele, Lea, Flood 2014). Java's long arithmetic wraps as C's uint64_t does;
    // only the right shifts must be the unsigned kind.
    static final class SplitMix64 {
        private long state;

        SplitMix64(long seed) {
            state = seed;
        }

        long next() {
            long z = (state += 0x9e3779b97f4a7c15L);
            z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
            z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
            return z ^ (z >>> 31);
        }

        // Uniform in [0, 1): the top 53 bits, exactly representable in a double.
        double nextDouble() {
            return (next() >>> 11) * 0x1.0p-53;
        }
    }

    // cdf[k-1] = P(rank <= k) with p(k) proportional to 1/k^s, summed in the same order as zipf.h.
    // Math.pow and glibc's pow disagree in the last bit for a few hundred of the million terms
    // (OpenJDK 17); every such term is far below the last bit of the running sum it joins, and the
    // CDF comes out identical. mc_compare --peer compares the whole trace's checksum at start, so
    // a JVM on which that stops being true is refused rather than measured on another workload.
    static double[] cdf(int n, double s) {
        double[] cdf = new double[n];
        double sum = 0.0;
        for (int k = 1; k <= n; k++) {
            sum += 1.0 / Math.pow((double) k, s);
            cdf[k - 1] = sum;
        }
        for (int i = 0; i < n; i++) cdf[i] /= sum;
        cdf[n - 1] = 1.0;
        return cdf;
    }

    // key = (smallest rank whose CDF reaches u) - 1, as std::lower_bound finds it: key 0 is the
    // hottest. Arrays.binarySearch would return any of several equal entries, so not that.
    static int[] trace(int len) {
        final double[] cdf = cdf(KEYS, EXPONENT);
        final SplitMix64 rng = new SplitMix64(SEED);
        final int[] trace = new int[len];
        for (int i = 0; i < len; i++) {
            final double u = rng.nextDouble();
            int lo = 0, hi = cdf.length;
            while (lo < hi) {
                final int mid = (lo + hi) >>> 1;
                if (cdf[mid] < u) lo = mid + 1;
                else hi = mid;
            }
            trace[i] = Math.min(lo, KEYS - 1);
        }
        return trace;
    }

    // zipf_trace_checksum in bench/zipf.h: FNV-1a's constants, one 32-bit key per step.
    static long checksum(int[] trace) {
        long h = 0xcbf29ce484222325L;
        for (int k : trace) {
            h ^= k & 0xffffffffL;
            h *= 0x100000001b3L;
        }
        return h;
    }

    // Share of requests for keys >= hot: 0.170 for the default trace and hot = 100,000.
    static double shareAtOrAbove(int[] trace, int hot) {
        long cold = 0;
        for (int k : trace) if (k >= hot) cold++;
        return trace.length == 0 ? 0.0 : (double) cold / trace.length;
    }

    // The line mc_compare --verbose prints for its own trace, so that the two can be compared.
    static String describe(int[] trace) {
        StringBuilder sb = new StringBuilder("trace: first keys");
        for (int i = 0; i < Math.min(16, trace.length); i++) sb.append(' ').append(trace[i]);
        return sb.append(String.format("; %d requests, checksum %016x", trace.length, checksum(trace))).toString();
    }
}
