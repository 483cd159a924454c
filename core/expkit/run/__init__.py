"""The run lifecycle every entry point shares.

A task (train, eval, predict, export) is `with open_run(task, cfg) as record: <its body>`:
`lifecycle` locks the run directory (`lock`), times the run, writes `results.json` (`record`)
however it ends and prints the summary (`summary`). Before the body: `validate` (early value
checks), `setup` (warnings, seed, saved config: `config_files`), `build` (callbacks, loggers,
trainer). Around `@hydra.main`: `cli` (resume= expansion, key hints).
"""
