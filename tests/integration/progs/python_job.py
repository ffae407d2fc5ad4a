"""A real interpreter as the checkpointed program: Python with a worker thread and
8 MiB of random data.  After SIGUSR1 it checks the data's hash and that the
thread kept running, then prints PASS."""
import hashlib
import os
import signal
import threading
import time

signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])     # sigwait() needs it blocked
data = os.urandom(8 << 20)
digest = hashlib.sha256(data).hexdigest()
ticks = 0
stop = False


def work():
    global ticks
    while not stop:
        ticks += 1
        time.sleep(0.01)


worker = threading.Thread(target=work)
worker.start()
print("READY", flush=True)
signal.sigwait([signal.SIGUSR1])
before = ticks
time.sleep(0.1)
ok = hashlib.sha256(data).hexdigest() == digest and ticks > before
stop = True
worker.join()
print("PASS" if ok else "FAIL: data or worker thread lost", flush=True)
