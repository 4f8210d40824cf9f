"""How long the Numba backend compiles before its first training call returns.

One fresh process with no kernel cache (FASTRNN_NUMBA_CACHE=0) takes a first
``loss_and_grad`` of a one-layer float32 LSTM (D=5, H=4, O=3, T=6, B=2, dense inputs),
then one of a 4-layer bidirectional LSTM of the same dtype and input kind, which should
compile nothing new: the stack kernels' types do not depend on the depth. The figures
are the process's CPU time (``time.process_time``), which other work on the machine
disturbs less than wall time does.
"""
import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json
    import time

    import numpy as np

    import fastrnn

    rng = np.random.default_rng(0)
    T, B, D, H, O = 6, 2, 5, 4, 3
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    y = rng.integers(0, O, (T, B))
    seconds = []
    for num_layers, bidirectional in ((1, False), (4, True)):
        params = fastrnn.init_params(D, H, O, cell="lstm", num_layers=num_layers,
                                     bidirectional=bidirectional, dtype=np.float32, seed=0)
        start = time.process_time()
        fastrnn.loss_and_grad(params, x, y, backend="numba")
        seconds.append(time.process_time() - start)
    print(json.dumps(seconds))
""")


class FirstCall:
    """CPU seconds of the first call of each network, from an empty kernel cache."""

    timeout = 600

    def setup_cache(self):
        env = dict(os.environ, FASTRNN_NUMBA_CACHE="0")
        proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                              text=True, env=env, check=True)
        return json.loads(proc.stdout)

    def track_lstm_one_layer(self, seconds):
        return seconds[0]

    track_lstm_one_layer.unit = "seconds"

    def track_lstm_four_layers_bidirectional_after(self, seconds):
        return seconds[1]

    track_lstm_four_layers_bidirectional_after.unit = "seconds"
