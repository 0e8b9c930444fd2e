"""`lessonbot serve`'s process set-up."""

from __future__ import annotations

import gc

from bot.cli.serve import keep_startup_objects_out_of_collections


def test_what_start_up_made_is_left_out_of_garbage_collections():
    made_at_start_up = [object() for _ in range(3)], {"a": [1, 2]}
    try:
        keep_startup_objects_out_of_collections()
        assert gc.get_freeze_count() > 0
        assert not any(each is made_at_start_up for each in gc.get_objects())  # frozen: in no generation
    finally:
        gc.unfreeze()
