"""moto's server for the local stack, with two changes that keep its wire behaviour.

1. SQS operations run one at a time. moto's threaded server takes no lock around queue state,
   so two concurrent receives can hand the same FIFO message to two consumers, which SQS never
   does. A long-poll wait releases the lock, so waiting receivers do not block the others.
2. moto reads the clock through datetime arithmetic for every message on every call; the same
   epoch-millisecond value is read from time.time() instead, which keeps a queue of a few
   thousand messages usable.

Usage: python scripts/moto_server.py -H 127.0.0.1 -p PORT   (same flags as moto_server)
"""

import functools
import threading
import time

import moto.sqs.models as sqs_models
from moto.server import main

_LOCK = threading.RLock()  # send_message_batch calls send_message
_slow_unix_time = sqs_models.unix_time
_slow_unix_time_millis = sqs_models.unix_time_millis


def _unix_time(dt=None):
    return time.time() if dt is None else _slow_unix_time(dt)


def _unix_time_millis(dt=None):
    return time.time() * 1000.0 if dt is None else _slow_unix_time_millis(dt)


def _one_at_a_time(operation):
    @functools.wraps(operation)
    def serialized(*args, **kwargs):
        with _LOCK:
            return operation(*args, **kwargs)

    return serialized


_wait_for_messages = sqs_models.Queue.wait_for_messages


def _wait_unlocked(self, timeout):
    _LOCK.release()
    try:
        started = time.monotonic()
        _wait_for_messages(self, timeout)
        # moto's wait returns at once while every visible message sits in a busy FIFO group;
        # yield instead of spinning on the lock.
        if time.monotonic() - started < 0.001:
            time.sleep(0.005)
    finally:
        _LOCK.acquire()


sqs_models.unix_time = _unix_time
sqs_models.unix_time_millis = _unix_time_millis
sqs_models.Queue.wait_for_messages = _wait_unlocked
for _name in (
    "create_queue",
    "delete_queue",
    "purge_queue",
    "send_message",
    "send_message_batch",
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "get_queue_attributes",
):
    setattr(sqs_models.SQSBackend, _name, _one_at_a_time(getattr(sqs_models.SQSBackend, _name)))

if __name__ == "__main__":
    main()
