"""SCAN (Lake & Baroni 2018): the command grammar, its interpretation function and the paper's splits.

Grammar (every command the grammar generates, 20,910 in all; no data files needed):

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> D opposite left|right | D around left|right | D | U      (with D restricted as below)
    D -> U left | U right | turn left | turn right
    U -> walk | look | run | jump

    |U| = 4, |D| = 10, |V| = 4 + 10 + 2 * 2 * 5 = 34, |S| = 3 * 34 = 102, |C| = 102 + 2 * 102^2 = 20,910.

Interpretation [[.]] (actions WALK LOOK RUN JUMP LTURN RTURN):

    [[walk]] = WALK (look, run, jump likewise)        [[turn left]] = LTURN    [[u left]] = LTURN [[u]]
    [[u opposite left]] = LTURN LTURN [[u]]           [[turn opposite left]] = LTURN LTURN
    [[u around left]] = (LTURN [[u]]) x 4             [[turn around left]] = LTURN x 4
    [[x twice]] = [[x]] [[x]]   [[x thrice]] = [[x]] x 3   [[a and b]] = [[a]] [[b]]   [[a after b]] = [[b]] [[a]]

(right/RTURN symmetrically). Splits (Lake & Baroni 2018; files of brendenlake/SCAN):
    add-primitive "jump" (add_prim_split): train = commands without "jump" plus "jump" itself (13,204),
        test = the other 7,706 (``tasks_test_addprim_jump.txt``).
    template "around right" (template_split): train = commands not containing "around right" (15,225,
        ``tasks_train_template_around_right.txt``); test = commands containing "around right" but not
        "turn around right" (4,476, ``tasks_test_template_around_right.txt``). The 1,209 commands with
        "turn around right" are in neither file, so they are in neither split here.
"""

from __future__ import annotations

import functools
from typing import Sequence

from cogmeta.vocabulary import Vocabulary, VocabularyError

PRIMITIVES = ("walk", "look", "run", "jump")
PRIMITIVE_ACTIONS = ("WALK", "LOOK", "RUN", "JUMP")
DIRECTIONS = ("left", "right")
TURN_ACTIONS = ("LTURN", "RTURN")
COMMAND_WORDS = PRIMITIVES + ("turn",) + DIRECTIONS + ("opposite", "around", "twice", "thrice", "and", "after")
ACTION_WORDS = PRIMITIVE_ACTIONS + TURN_ACTIONS

COMMANDS = Vocabulary("command", COMMAND_WORDS)
ACTIONS = Vocabulary("action", ACTION_WORDS)

#: the longest command (9 words: "walk opposite left thrice and walk opposite left thrice") and action
#: sequence (48: "x around left thrice and/after y around left thrice") the grammar produces.
MAX_COMMAND_WORDS = 9
MAX_ACTION_WORDS = 48


class ScanSyntaxError(VocabularyError):
    """A command that the SCAN grammar does not generate."""


def _words(command: str | Sequence[str]) -> tuple[str, ...]:
    words = tuple(command.split()) if isinstance(command, str) else tuple(command)
    if not words:
        raise ScanSyntaxError("empty command: a SCAN command has at least one word, e.g. 'jump'")
    for w in words:
        COMMANDS.index(w)  # unknown words raise with the vocabulary listed
    return words


def _verb(words: tuple[str, ...], meaning: dict[str, str], turns: dict[str, str]) -> tuple[str, ...]:
    """[[V]] for V in the grammar above; ``meaning`` maps primitive words to actions."""
    if len(words) == 1 and words[0] in meaning:
        return (meaning[words[0]],)
    if len(words) == 2 and words[1] in turns:
        turn = turns[words[1]]
        if words[0] == "turn":
            return (turn,)
        if words[0] in meaning:
            return (turn, meaning[words[0]])
    if len(words) == 3 and words[1] in ("opposite", "around") and words[2] in turns:
        turn = turns[words[2]]
        body = () if words[0] == "turn" else ((meaning[words[0]],) if words[0] in meaning else None)
        if body is not None:
            return (turn, turn) + body if words[1] == "opposite" else ((turn,) + body) * 4
    raise ScanSyntaxError(f"{' '.join(words)!r} is not a SCAN verb phrase (e.g. 'jump', 'walk left', 'run around right')")


def _sentence(words: tuple[str, ...], meaning, turns) -> tuple[str, ...]:
    if words and words[-1] in ("twice", "thrice"):
        return _verb(words[:-1], meaning, turns) * (2 if words[-1] == "twice" else 3)
    return _verb(words, meaning, turns)


def interpret(
    command: str | Sequence[str], meaning: dict[str, str] | None = None, turns: dict[str, str] | None = None
) -> tuple[str, ...]:
    """[[command]] as a tuple of action words.

    Args:
        command: a string ("jump twice") or a sequence of words.
        meaning: primitive word -> action (default: walk->WALK, ...); episodes pass permuted meanings.
        turns: direction word -> turn action (default left->LTURN, right->RTURN).

    Raises:
        VocabularyError: unknown word; ScanSyntaxError: empty or ungrammatical command.
    """
    words = _words(command)
    meaning = dict(zip(PRIMITIVES, PRIMITIVE_ACTIONS)) if meaning is None else meaning
    turns = dict(zip(DIRECTIONS, TURN_ACTIONS)) if turns is None else turns
    for connective in ("and", "after"):
        if connective in words:
            at = words.index(connective)
            first, second = _sentence(words[:at], meaning, turns), _sentence(words[at + 1 :], meaning, turns)
            return first + second if connective == "and" else second + first
    return _sentence(words, meaning, turns)


@functools.lru_cache(maxsize=1)
def all_commands() -> tuple[str, ...]:
    """Every command of the grammar (20,910), in a fixed order."""
    verbs = list(PRIMITIVES)
    for body in PRIMITIVES + ("turn",):
        verbs += [f"{body} {d}" for d in DIRECTIONS]
    for body in PRIMITIVES + ("turn",):
        for adverb in ("opposite", "around"):
            verbs += [f"{body} {adverb} {d}" for d in DIRECTIONS]
    sentences = [f"{v}{suffix}" for v in verbs for suffix in ("", " twice", " thrice")]
    commands = list(sentences)
    for connective in ("and", "after"):
        commands += [f"{a} {connective} {b}" for a in sentences for b in sentences]
    return tuple(commands)


SPLITS = ("add_jump", "around_right")


def split(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(train, test)`` commands of split ``name`` ("add_jump" or "around_right"), in grammar order.

    add_jump: train 13,204 (no "jump", plus "jump" itself), test 7,706 (every other command with "jump").
    around_right: train 15,225 (no "around right"), test 4,476 ("around right" but not "turn around
    right"); the 1,209 "turn around right" commands are left out of both, as in the official files
    (Lake & Baroni 2018, brendenlake/SCAN ``template_split/tasks_{train,test}_template_around_right.txt``).
    """
    commands = all_commands()
    if name == "add_jump":
        test = tuple(c for c in commands if "jump" in c.split() and c != "jump")
        held = set(test)
        return tuple(c for c in commands if c not in held), test
    if name == "around_right":
        train = tuple(c for c in commands if "around right" not in c)
        test = tuple(c for c in commands if "around right" in c and "turn around right" not in c)
        return train, test
    raise ValueError(f"unknown SCAN split {name!r}; choose one of {', '.join(SPLITS)}")
