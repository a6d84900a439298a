"""The flag declarations are the one source of truth: every flag of every tool is declared
once, classified for the run identity, wired to what it feeds, checked alike everywhere,
and listed in the docs."""

import inspect
import pathlib

import pytest

from supervised_reptile import args as flags
from supervised_reptile.eval import evaluate
from supervised_reptile.train import train

DOCS = pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'flags.md'


def test_every_training_flag_is_classified_for_the_run_identity():
    for omniglot in (False, True):
        for action in flags.argument_parser('data', omniglot)._actions:
            if action.dest != 'help':
                assert flags.FLAGS[action.dest].identity in (True, False), action.dest


def test_every_training_and_evaluation_parameter_is_fed_by_one_flag():
    fed = lambda key: [getattr(f, key) for f in flags.FLAGS.values() if getattr(f, key)]
    for function, key, not_flags in ((train, 'train', {'algo', 'train_set', 'test_set', 'save_dir', 'start_iteration',
                                                        'eval_stream', 'runner', 'overlap'}),
                                     (evaluate, 'evaluate', {'algo', 'dataset', 'runner'})):
        parameters = set(inspect.signature(function).parameters) - not_flags
        assert sorted(fed(key)) == sorted(parameters), function.__name__


def test_the_training_kwargs_come_from_the_parsed_flags():
    args = flags.parse(flags.argument_parser('data'), ['--classes', '3', '--eval-parallel', '7'])
    assert flags.train_kwargs(args)['num_classes'] == 3
    assert flags.evaluate_kwargs(args)['episodes_per_call'] == 7
    assert 'eval_samples' not in flags.identity_flags(args) and flags.identity_flags(args)['classes'] == 3


@pytest.mark.parametrize('names, argv, message', [
    (['classes'], ['--classes', '1'], '--classes must be at least 2, got 1'),
    (['fine_tune_iters'], ['--inner-iters', '0'], '--inner-iters must be at least 1, got 0'),
    (['inner_iters'], ['--inner-iters', '0'], '--inner-iters must be at least 1, got 0'),
    (['learning_rate'], ['--learning-rate', '0'], '--learning-rate must be above 0, got 0.0'),
    (['learning_rate'], ['--learning-rate', 'nan'], '--learning-rate must be a finite number, got nan'),
    (['port'], ['--port', '99999'], '--port must be at most 65535, got 99999'),
    (['checkpoint'], ['--checkpoint', ''], "--checkpoint must not be empty, got ''"),
    (['seed'], ['--seed', '-1'], '--seed must be at least 0 and at most 4294967295, got -1'),
])
def test_one_range_check_and_message_for_every_tool(names, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        flags.parse(flags.parser(names), argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_docs_flag_table_is_the_declarations():
    assert flags.markdown_table() in DOCS.read_text()
