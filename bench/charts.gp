# bench/charts.gp: the benchmark charts, drawn from the data files mc_compare --report writes.
# Usage: gnuplot -e "dir='build/bench-results'" bench/charts.gp  (writes dir/*.png)

if (!exists("dir")) dir = "build/bench-results"
# plot-meta.gp (from mc_compare --report) names the run: version, date, machine, load.
run_note = ""
if (system("[ -f '".dir."/plot-meta.gp' ] && echo 1 || echo 0") eq "1") load dir."/plot-meta.gp"
set datafile missing "?"
set encoding utf8

# ---------------------------------------------------------------------------------------------
# throughput.png: M ops/s by system and thread count, one panel per workload. The systems span
# more than two orders of magnitude (a warm memoized call against a network round trip), so the
# y axes are logarithmic and every bar carries its value.

set terminal pngcairo size 1600,620 font "DejaVu Sans,11" noenhanced
set output dir."/throughput.png"
set multiplot layout 1,3 title "Throughput by system and threads (higher is better; log scale)\n".run_note font ",14"

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border rgb "gray30"
set boxwidth 0.95 relative
set logscale y 10
set format y "%g"
set grid ytics mytics lc rgb "gray85"
set ylabel "million operations per second"
set xtics nomirror rotate by 30 right scale 0
set ytics nomirror
set key top right box opaque
set bmargin 6
set lmargin 10

# Two bars per cluster with a gap of one bar: centres at x - 1/6 and x + 1/6.
bar1(x) = x - 1.0/6
bar2(x) = x + 1.0/6
val(v) = v >= 10 ? sprintf("%.0f", v) : v >= 1 ? sprintf("%.1f", v) : v >= 0.1 ? sprintf("%.2f", v) : sprintf("%.3f", v)

do for [panel in "zipf-getput zipf-readonly db-lookup"] {
    f = dir."/plot-".panel.".dat"
    if (panel eq "zipf-getput") {
        set title "Zipf: get, put on miss (100,000-entry cache)"
    } else {
        if (panel eq "zipf-readonly") {
            set title "Zipf: get only (100,000-entry cache)"
        } else {
            set title "db-lookup: user id -> department"
        }
    }
    # The smallest and largest values (and how many there are), for a y range with head room
    # above the tallest bar for its label and the key.
    rng = system(sprintf("awk '!/^#/ { for (i = 2; i <= 3; i++) if ($i != \"?\") { n++; " . \
                         "if (lo == \"\" || $i + 0 < lo + 0) lo = $i; if ($i + 0 > hi + 0) hi = $i } } " . \
                         "END { print n + 0, (lo == \"\" ? 1 : lo), (hi == \"\" ? 1 : hi) }' '%s' 2>/dev/null", f))
    count = (words(rng) == 3) ? int(word(rng, 1) + 0) : 0
    if (count == 0) {
        # A workload left out of the run: an empty panel that says so.
        set yrange [1:10]
        set xrange [0:1]
        unset xtics
        unset key
        set label 1 "not run" at graph 0.5, 0.5 center font ",14"
        plot NaN notitle
        unset label 1
        set autoscale x
        set xtics nomirror rotate by 30 right scale 0
        set key top right box opaque
    } else {
        lo = word(rng, 2) + 0.0
        hi = word(rng, 3) + 0.0
        set yrange [10**floor(log10(lo / 3)) : 10**ceil(log10(hi * 2.5))]
        plot f using 2:xtic(1) title "1 thread" lc rgb "#4C72B0", \
             '' using 3 title "2 threads" lc rgb "#DD8452", \
             '' using (bar1($0)):2:(val($2)) with labels offset 0,0.8 font ",9" notitle, \
             '' using (bar2($0)):3:(val($3)) with labels offset 0,0.8 font ",9" notitle
    }
}
unset multiplot
unset output

# ---------------------------------------------------------------------------------------------
# missratio.png: miss ratio on cloudphysics.txt by cache size. Measured systems are solid with
# markers; libCacheSim's reference rows are dashed, in the colour of the policy they match.

reset
set datafile missing "?"
set terminal pngcairo size 1100,700 font "DejaVu Sans,11" noenhanced
set output dir."/missratio.png"
set title "Miss ratio on cloudphysics.txt by cache size (lower is better)\n".run_note font ",12"
set logscale x 10
set xrange [400:25000]
set xtics ("500" 500, "2,000" 2000, "5,000" 5000, "10,000" 10000, "20,000" 20000) nomirror
set ytics nomirror
set format y "%.2f"
set xlabel "cache size (objects, log scale)"
set ylabel "miss ratio"
set grid xtics ytics lc rgb "gray85"
set key bottom left box opaque
f = dir."/plot-missratio.dat"
plot f using 1:2 with linespoints lw 2.5 pt 7 ps 1.3 lc rgb "#1F77B4" title "modcache lru (measured)", \
     '' using 1:3 with linespoints lw 2.5 pt 5 ps 1.3 lc rgb "#D62728" title "modcache s3fifo (measured)", \
     '' using 1:4 with points pt 6 ps 2.2 lw 1.5 lc rgb "black" title "mutex-lru, exact LRU (measured)", \
     '' using 1:5 with lines dt 2 lw 1.8 lc rgb "#1F77B4" title "ref exact LRU (libCacheSim)", \
     '' using 1:7 with lines dt 2 lw 1.8 lc rgb "#D62728" title "ref S3-FIFO (libCacheSim)", \
     '' using 1:6 with lines dt 3 lw 1.8 lc rgb "gray40" title "ref CLOCK 1 bit (libCacheSim)", \
     '' using 1:8 with lines dt 3 lw 1.8 lc rgb "#2CA02C" title "ref SIEVE (libCacheSim)", \
     '' using 1:9 with lines dt 3 lw 1.8 lc rgb "#FF7F0E" title "ref W-TinyLFU (libCacheSim)"
unset output
