"""SCAN grammar, interpretation, splits, vocabularies and meta-seq2seq episode generators (numpy only).

References: the counts of Lake & Baroni (2018)'s released SCAN files (brendenlake/SCAN): 20,910 commands
(``tasks.txt``); add-jump 13,204 / 7,706 (``add_prim_split/tasks_{train,test}_addprim_jump.txt``);
around-right 15,225 / 4,476 (``template_split/tasks_{train,test}_template_around_right.txt``, which leave
the 1,209 "turn around right" commands out of both); and hand-derived interpretations from the paper's
semantics.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cogmeta.tasks import scan
from cogmeta.tasks.scan_episodes import (
    COLOURS,
    PSEUDOWORDS,
    EpisodeStream,
    MutualExclusivityTask,
    ScanEpisodeTask,
    check_command,
    stack_episodes,
)
from cogmeta.vocabulary import EOS_ID, PAD_ID, SOS_ID, Vocabulary, VocabularyError

KNOWN = {
    "jump": "JUMP",
    "jump twice": "JUMP JUMP",
    "turn left": "LTURN",
    "walk left": "LTURN WALK",
    "walk around right": "RTURN WALK RTURN WALK RTURN WALK RTURN WALK",
    "turn around left": "LTURN LTURN LTURN LTURN",
    "look opposite right": "RTURN RTURN LOOK",
    "turn opposite left thrice": "LTURN LTURN LTURN LTURN LTURN LTURN",
    "jump and walk": "JUMP WALK",
    "jump after walk": "WALK JUMP",
    "run twice after walk opposite left": "LTURN LTURN WALK RUN RUN",
    "look right thrice and turn left twice": "RTURN LOOK RTURN LOOK RTURN LOOK LTURN LTURN",
}


@pytest.mark.parametrize("command,actions", list(KNOWN.items()))
def test_known_interpretations(command, actions):
    assert scan.interpret(command) == tuple(actions.split())


def test_grammar_size_and_lengths():
    commands = scan.all_commands()
    assert len(commands) == 20_910 and len(set(commands)) == 20_910
    assert max(len(c.split()) for c in commands) == scan.MAX_COMMAND_WORDS == 9
    assert max(len(scan.interpret(c)) for c in commands) == scan.MAX_ACTION_WORDS == 48


def test_split_counts_match_the_official_scan_files():
    """Sizes of the three SCAN collections (Lake & Baroni 2018, brendenlake/SCAN release files)."""
    commands = scan.all_commands()
    assert len(commands) == 20_910
    train, test = scan.split("add_jump")
    assert (len(train), len(test)) == (13_204, 7_706)
    assert len(set(train)) == len(train) and len(set(test)) == len(test) and not set(train) & set(test)
    assert set(train) | set(test) == set(commands)
    train, test = scan.split("around_right")
    assert (len(train), len(test)) == (15_225, 4_476)
    assert len(set(train)) == len(train) and len(set(test)) == len(test) and not set(train) & set(test)
    # the template split drops every "turn around right" command from both files
    assert not any("turn around right" in c for c in train + test)
    dropped = set(commands) - set(train) - set(test)
    assert len(dropped) == 1_209 and all("turn around right" in c for c in dropped)
    assert all("around right" not in c for c in train)
    assert all("around right" in c for c in test)
    # examples of the official test file, and of commands it leaves out
    assert {"jump around right", "jump and walk around right twice"} <= set(test)
    assert {"jump after turn around right", "jump and turn around right thrice"} <= dropped


def test_splits():
    train, test = scan.split("add_jump")
    assert (len(train), len(test)) == (13_204, 7_706)
    assert "jump" in train and all("jump" not in c.split() for c in train if c != "jump")
    assert all("jump" in c.split() for c in test)
    train, test = scan.split("around_right")
    assert len(train) == 15_225 and all("around right" in c for c in test)
    assert not set(train) & set(test)
    with pytest.raises(ValueError, match="unknown SCAN split 'length'"):
        scan.split("length")


@pytest.mark.parametrize("command,message", [
    ("jump fast", "unknown command word 'fast'"),
    ("", "empty command"),
    ("twice jump", "not a SCAN verb phrase"),
    ("jump and", "not a SCAN verb phrase"),
])
def test_bad_commands(command, message):
    with pytest.raises(VocabularyError, match=message):
        scan.interpret(command)


def test_permuted_meanings():
    meaning = {"walk": "JUMP", "look": "RUN", "run": "LOOK", "jump": "WALK"}
    assert scan.interpret("jump twice after look left", meaning=meaning) == ("LTURN", "RUN", "WALK", "WALK")


def test_vocabulary_specials_and_errors():
    vocab = Vocabulary("colour", ("RED", "BLUE"))
    assert vocab.tokens[:3] == ("<pad>", "<sos>", "<eos>") and (PAD_ID, SOS_ID, EOS_ID) == (0, 1, 2)
    np.testing.assert_array_equal(vocab.encode(["BLUE", "RED"]), [4, 3, EOS_ID])
    assert vocab.decode([4, 3, EOS_ID, 4]) == ("BLUE", "RED")
    with pytest.raises(VocabularyError, match="more than the maximum 1"):
        vocab.encode(["RED", "RED"], max_length=1)
    with pytest.raises(VocabularyError, match="empty colour sequence"):
        vocab.encode([])
    with pytest.raises(VocabularyError, match="vocabulary mismatch"):
        vocab.check_matches(("<pad>", "<sos>", "<eos>", "BLUE", "RED"), "a checkpoint")


def test_mutual_exclusivity_episode():
    task = MutualExclusivityTask()
    rng = np.random.default_rng(3)
    for _ in range(20):
        episode = task.sample(rng)
        assert len(episode.support) == 3 and len(episode.query) == 20 + 3
        meaning = {c[0]: a[0] for c, a in episode.support}
        (withheld,) = set(PSEUDOWORDS) - set(meaning)
        (unused,) = set(COLOURS) - set(meaning.values())
        meaning[withheld] = unused  # mutual exclusivity: the withheld word takes the unused colour
        novel = [q for q, s in zip(episode.query, episode.query_in_support) if not s]
        assert len(set(novel)) == 20 and all(2 <= len(c) <= 6 for c, _ in novel)
        assert all(tuple(meaning[w] for w in c) == a for c, a in episode.query)
        assert episode.query[20:] == episode.support and episode.query_in_support == (False,) * 20 + (True,) * 3


def test_add_jump_episode_sizes_and_test_episode():
    task = ScanEpisodeTask("add_jump")
    episode = task.sample(np.random.default_rng(0))
    assert len(episode.support) == 20 and len(episode.query) == 40
    assert episode.query[20:] == episode.support and len(set(episode.query)) == 40
    test = task.test_episode()
    assert len(test.query) == 7_706 and test.query_in_support == (False,) * 7_706
    assert test.support == tuple(((w,), (a,)) for w, a in zip(scan.PRIMITIVES, scan.PRIMITIVE_ACTIONS))


def test_add_jump_meanings_are_a_permutation():
    """Recover each episode's primitive mapping from its pairs: it must be a bijection used consistently."""
    task = ScanEpisodeTask("add_jump")
    rng = np.random.default_rng(1)
    mappings = set()
    for _ in range(15):
        episode = task.sample(rng)
        found = {}
        for command, actions in episode.query:
            for candidate in _all_permutations():
                if scan.interpret(command, meaning=candidate) == actions:
                    found.setdefault(command, set()).add(tuple(sorted(candidate.items())))
        common = set.intersection(*found.values())
        assert common, "one permutation must explain every pair of the episode"
        mappings |= common
    assert len(mappings) > 5, "episodes should use many different permutations"


def _all_permutations():
    from itertools import permutations

    return [dict(zip(scan.PRIMITIVES, p)) for p in permutations(scan.PRIMITIVE_ACTIONS)]


def test_around_right_episode_and_test_set():
    task = ScanEpisodeTask("around_right")
    episode = task.sample(np.random.default_rng(0))
    assert all("around right" not in " ".join(c) for c, _ in episode.query)
    test = task.test_episode()
    assert test.support == ((("turn", "left"), ("LTURN",)), (("turn", "right"), ("RTURN",)))
    assert all("around right" in " ".join(c) for c, _ in test.query)
    assert len(test.query) == 4_476 and test.query_in_support == (False,) * 4_476
    assert all("turn around right" not in " ".join(c) for c, _ in test.query)
    assert set(task.pool()) == set(scan.split("around_right")[0]) and len(task.pool()) == 15_225


def test_encoding_shapes_padding_and_teacher_forcing():
    task = ScanEpisodeTask("add_jump")
    arrays = task.encode(task.sample(np.random.default_rng(2)))
    assert arrays.query_in.shape == (10, 40) and arrays.target_in.shape == (49, 40)
    assert arrays.support_in.shape == (10, 20) and arrays.support_out.shape == (49, 20)
    for q in range(40):
        n = int((arrays.target_out[:, q] != PAD_ID).sum())
        assert arrays.target_out[n - 1, q] == EOS_ID and arrays.target_in[0, q] == SOS_ID
        np.testing.assert_array_equal(arrays.target_in[1:n, q], arrays.target_out[: n - 1, q])
        assert arrays.query_in[arrays.query_in_len[q] - 1, q] == EOS_ID
    trimmed = arrays.trimmed()
    assert trimmed.target_in.shape[0] == int((arrays.target_out != PAD_ID).sum(0).max())
    stacked = stack_episodes([arrays, arrays])
    assert stacked["target_in"].shape == (2, 49, 40)


def test_stream_is_reproducible_and_skips_validation_episodes():
    task = MutualExclusivityTask()
    a, b = EpisodeStream(task, 5), EpisodeStream(task, 5)
    assert [a.next() for _ in range(5)] == [b.next() for _ in range(5)]
    assert len(a.validation) == 5
    keys = {e.key() for e in a.validation}
    assert all(a.next().key() not in keys for _ in range(50))


def test_add_jump_training_never_uses_the_test_mapping():
    """Lake's tabu list: the validation episodes carry the true meanings and their mapping is tabu, so
    meta-training never sees the test episode's mapping (1 of 24; ~25 of 600 untabooed draws would be it)."""
    task = ScanEpisodeTask("add_jump")
    stream = EpisodeStream(task, 0)
    truth = task.tabu_key(task.test_episode())
    assert truth == tuple(sorted(zip(scan.PRIMITIVES, scan.PRIMITIVE_ACTIONS)))
    assert len(stream.validation) == 5 and all(task.tabu_key(e) == truth for e in stream.validation)
    assert all(scan.interpret(c) == a for e in stream.validation for c, a in e.query)
    seen = set()
    for _ in range(600):
        episode = stream.next()
        meaning = dict(episode.mapping)
        assert all(scan.interpret(c, meaning=meaning) == a for c, a in episode.query)
        seen.add(task.tabu_key(episode))
    assert truth not in seen and len(seen) == 23
    # without validation episodes there is no tabu: the identity mapping comes back
    free = EpisodeStream(dataclasses.replace(task, validation_episodes=0), 0)
    assert any(task.tabu_key(free.next()) == truth for _ in range(600))


@pytest.mark.parametrize("command,message", [
    ("dax blicket", "unknown command word 'blicket'"),
    ("   ", "empty command"),
    ("dax " * 7, "more than the maximum 6"),
])
def test_check_command_errors(command, message):
    with pytest.raises(VocabularyError, match=message):
        check_command(MutualExclusivityTask(), command)


def test_spec_validation():
    with pytest.raises(ValueError, match="ScanEpisodeTask.split must be one of"):
        ScanEpisodeTask("jump")
    with pytest.raises(ValueError, match="num_query"):
        MutualExclusivityTask(num_query=0)
