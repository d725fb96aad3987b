"""The on-disk judge cache: keys, hits, persistence across opens, bad files."""

from __future__ import annotations

import pytest

from swirl.judge.cache import JudgeCache, cache_key

MESSAGES = [{"role": "user", "content": "Is 2+2=4? Verdict: YES or NO"}]


def test_key_depends_on_every_part() -> None:
    base = cache_key("m", "t=0", MESSAGES, 0, 0)
    assert base == cache_key("m", "t=0", [dict(MESSAGES[0])], 0, 0)
    others = {
        cache_key("m2", "t=0", MESSAGES, 0, 0),
        cache_key("m", "t=1", MESSAGES, 0, 0),
        cache_key("m", "t=0", [{"role": "user", "content": "Is 2+2=5?"}], 0, 0),
        cache_key("m", "t=0", MESSAGES, 1, 0),
        cache_key("m", "t=0", MESSAGES, 0, 1),
    }
    assert base not in others and len(others) == 5


def test_hits_persist_across_opens(tmp_path) -> None:
    path = tmp_path / "cache" / "judge.sqlite"
    keys = [cache_key("m", "", MESSAGES, sample, 0) for sample in range(3)]
    with JudgeCache(path) as cache:
        assert cache.get_many(keys) == {}
        assert (cache.hits, cache.misses) == (0, 3)
        cache.put_many([(keys[0], "m", 0, 0, "YES"), (keys[1], "m", 1, 0, "Verdict: NO")])
        cache.put_many([(keys[0], "m", 0, 0, "overwritten?")])  # first write wins
    with JudgeCache(path) as cache:
        assert len(cache) == 2
        assert cache.get_many(keys) == {keys[0]: "YES", keys[1]: "Verdict: NO"}
        assert (cache.hits, cache.misses) == (2, 1)


def test_many_keys_are_looked_up_in_chunks(tmp_path) -> None:
    keys = [cache_key("m", "", MESSAGES, i, 0) for i in range(1234)]
    with JudgeCache(tmp_path / "c.sqlite") as cache:
        cache.put_many((key, "m", i, 0, str(i)) for i, key in enumerate(keys))
        found = cache.get_many(keys)
    assert len(found) == 1234 and found[keys[1000]] == "1000"


def test_a_corrupt_file_is_named(tmp_path) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match=r"broken\.sqlite: not a usable judge cache"):
        JudgeCache(path)
