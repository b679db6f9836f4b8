"""moto's server for the local stack, with three changes that keep its wire behaviour.

1. SQS operations run one at a time. moto's threaded server takes no lock around queue state,
   so two concurrent receives can hand the same FIFO message to two consumers, which SQS never
   does. A long-poll wait releases the lock, so waiting receivers do not block the others.
2. moto reads the clock through datetime arithmetic for every message on every call; the same
   epoch-millisecond value is read from time.time() instead, which keeps a queue of a few
   thousand messages usable.
3. DynamoDB item operations run one at a time (a lock of their own, so they never wait on SQS).
   moto evaluates a ConditionExpression and then writes, with nothing held in between, so two
   concurrent conditional writes on one item could both succeed, which DynamoDB never allows.
   The batch tracking table relies on exactly that guarantee.

Usage: python scripts/moto_server.py -H 127.0.0.1 -p PORT   (same flags as moto_server)
"""

import functools
import threading
import time

import moto.dynamodb.models as dynamodb_models
import moto.sqs.models as sqs_models
from moto.server import main

_LOCK = threading.RLock()  # send_message_batch calls send_message
_DYNAMODB_LOCK = threading.RLock()  # transact_write_items may call the item operations
_slow_unix_time = sqs_models.unix_time
_slow_unix_time_millis = sqs_models.unix_time_millis


def _unix_time(dt=None):
    return time.time() if dt is None else _slow_unix_time(dt)


def _unix_time_millis(dt=None):
    return time.time() * 1000.0 if dt is None else _slow_unix_time_millis(dt)


def _one_at_a_time(operation, lock=_LOCK):
    @functools.wraps(operation)
    def serialized(*args, **kwargs):
        with lock:
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
for _name in (
    "put_item",
    "get_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
):
    setattr(
        dynamodb_models.DynamoDBBackend,
        _name,
        _one_at_a_time(getattr(dynamodb_models.DynamoDBBackend, _name), _DYNAMODB_LOCK),
    )

if __name__ == "__main__":
    main()
