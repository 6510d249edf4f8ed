import pytest

from tfner.config import ConfigError, load_config


def write(tmp_path, text):
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_then_file_then_overrides(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 7\n  learning_rate: 5e-5\ndata:\n  train: a.txt\n")
    config = load_config(path, ["train.epochs=9", "data.dev=b.txt,c.txt", "model.head=softmax"])
    assert config.train.epochs == 9
    assert config.train.learning_rate == 5e-5  # YAML reads 5e-5 as a string; it is coerced
    assert config.data.train == ["a.txt"] and config.data.dev == ["b.txt", "c.txt"]
    assert config.model.head == "softmax"
    assert config.train.batch_size == 32  # untouched default
    assert config.export_dir == "export/ner"


def test_string_fields_keep_what_was_written(tmp_path):
    """YAML 1.1 reads 010 as 8, 2024_12_07 as 20241207 and 0x1F as 31; a string field keeps the text."""
    path = write(tmp_path, "run_dir: 2024_12_07\nexport:\n  model_name: 010\ntrain:\n  epochs: 0x3\n")
    config = load_config(path, ["data.vocab=0x1F"])
    assert (config.run_dir, config.export.model_name, config.data.vocab) == ("2024_12_07", "010", "0x1F")
    assert config.export_dir == "export/010"
    assert config.train.epochs == 3 and type(config.train.epochs) is int  # number fields stay plain numbers
    assert load_config(None, ["export.model_name=007", "train.epochs=4"]).export.model_name == "007"


def test_a_date_is_the_text_written_and_a_file_path_keeps_its_commas(tmp_path):
    """`run_dir: 2024-12-07` was refused as a datetime.date; a file's `train: a,b.txt` was split in two."""
    path = write(tmp_path, "run_dir: 2024-12-07\nexport:\n  model_name: 2024-12-07\ndata:\n  train: my,file.txt\n")
    config = load_config(path)
    assert (config.run_dir, config.export.model_name) == ("2024-12-07", "2024-12-07")
    assert config.data.train == ["my,file.txt"]
    assert load_config(path, ["data.train=a.txt, b.txt"]).data.train == ["a.txt", "b.txt"]  # --set lists


@pytest.mark.parametrize("override, message", [
    ("train.seed=-1", "'train.seed' must be in [0, 2**32)"),
    ("train.seed=4294967296", "'train.seed' must be in [0, 2**32)"),  # was a bare ValueError mid-run
    ("train.learning_rate=.inf", "'train.learning_rate' must be a finite number, got inf"),
    ("train.weight_decay=inf", "'train.weight_decay' must be a finite number"),
    ("distill.temperature=.nan", "'distill.temperature' must be a finite number"),
    ("export.model_name=on", "must be a string (YAML reads yes, no, on, off, true and false as booleans: quote"),
])
def test_out_of_range_numbers_and_booleans_for_text_are_named(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("train:\n  epoch: 3\n", [], "unknown key 'train.epoch'"),
        ("train:\n  epochs: three\n", [], "'train.epochs' must be an integer"),
        ("model:\n  head: lstm\n", [], "'model.head' must be one of crf, softmax"),
        ("train: 3\n", [], "'train' is a section"),
        ("- a\n", [], "top level must be a mapping"),
        ("", ["train.epochs"], "expected key=value"),
        ("", ["train.nope=1"], "unknown key 'train.nope'"),
        ("", ["data.lowercase=maybe"], "'data.lowercase' must be true or false"),
    ],
)
def test_bad_config_names_key_and_source(tmp_path, text, overrides, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path, overrides)
    assert message in str(error.value)
    assert (path if not overrides else "--set") in str(error.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("data.train=*.bmes", "train", ["*.bmes"]),  # YAML reads a leading * as an alias
        ("data.train=*.bmes,extra/*.bio", "train", ["*.bmes", "extra/*.bio"]),
        ("data.dev=[a.bio", "dev", ["[a.bio"]),  # an unclosed YAML list
        ("data.vocab=@vocab.txt", "vocab", "@vocab.txt"),  # @ and ` are reserved in YAML
    ],
)
def test_set_takes_text_yaml_cannot_parse_as_the_string_written(override, key, value):
    """A string field's --set value that is not valid YAML is taken as written (it was a yaml traceback)."""
    assert getattr(load_config(None, [override]).data, key) == value


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=[3", "--set train.epochs=[3: 'train.epochs' must be an integer, got '[3'"),
        ("model.dropout=@0.1", "--set model.dropout=@0.1: 'model.dropout' must be a finite number, got '@0.1'"),
        ("train=*x", "--set train=*x: 'train' is a section"),
        ("train.epoch=*3", "--set train.epoch=*3: unknown key 'train.epoch'"),
    ],
)
def test_set_text_yaml_cannot_parse_is_refused_by_key_for_other_fields(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)


@pytest.mark.parametrize(
    "text, key, lines",
    [
        ("run_dir: r\ntrain:\n  epochs: 10\nmodel:\n  num_layers: 4\ntrain:\n  seed: 7\n", "'train'", "lines 2 and 6"),
        ("train:\n  epochs: 10\n  seed: 1\n  epochs: 3\n", "'train.epochs'", "lines 2 and 4"),
        ("run_dir: a\nrun_dir: b\n", "'run_dir'", "lines 1 and 2"),
    ],
)
def test_a_key_written_twice_is_refused_with_both_lines(tmp_path, text, key, lines):
    """YAML keeps the last of two equal keys: a second train: section silently dropped the first's settings."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}:") and f"{key} is written twice, at {lines}" in message
    assert "\n" not in message


def test_a_key_written_twice_in_a_set_value_is_refused():
    with pytest.raises(ConfigError, match=r"--set train=\{epochs: 1, epochs: 2\}: 'train.epochs' is written twice"):
        load_config(None, ["train={epochs: 1, epochs: 2}"])


@pytest.mark.parametrize("text, overrides", [("run_dir: ~\n", []), ("", ["run_dir="]), ("", ["run_dir=  "])])
def test_an_empty_run_dir_is_refused_by_name(tmp_path, text, overrides):
    """It used to fail at the first write with "[Errno 2] No such file or directory: ''"."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"'run_dir' must be a folder .*; got ''"):
        load_config(path, overrides)
