"""One table of every run and sweep job: `python -m expkit.runs_table [dirs...] [filters]`.

- `discover`: finds run directories under the given roots (default `logs/`);
- `read`: reads what each left (results.json, .hydra/overrides.yaml, config.yaml; never a
  checkpoint) into a `Run`, and looks up any config key, metric or field of it;
- `filter`: `--tag`, `--task`, `--status`, `--since/--until` and `--where KEY OP VALUE`;
- `cli`: the command line, the console table (rich), CSV and Markdown files.
"""
