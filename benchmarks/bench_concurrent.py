"""Two trainings at once: how much slower each gets when two jobs share the cores.

``fastrnn.bench.concurrent`` trains ``fastrnn train``'s default model in one process,
then in two processes started together; the figure is the slower one's time over the
one alone's: about 1 on two idle cores, about 2 when each job has half a core, far more
when BLAS's threads spin waiting for each other.
"""
import io

from fastrnn import bench

STEPS = 100


class ConcurrentTraining:
    timeout = 600

    def setup(self):
        bench.concurrent(1, out=io.StringIO())      # the kernels compile into the cache

    def track_slowdown(self):
        return round(bench.concurrent(STEPS, out=io.StringIO())["slowdown"], 2)

    track_slowdown.unit = "x"
