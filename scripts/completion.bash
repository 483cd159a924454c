# Tab completion of the entry points' overrides (config groups, options, keys), in bash or zsh:
#   source scripts/completion.bash        (zsh: autoload -Uz bashcompinit && bashcompinit first)
# then `python src/train.py mod<Tab>` or `.venv/bin/python src/train.py trainer.max_<Tab>`.
# Hydra answers (`python src/train.py -sc query=bash`, core/expkit/run/completion.py); unlike the script of
# Hydra's `-sc install=bash`, this one runs the python that was typed, with the script.
_template_hydra_complete() {
    local words=($COMP_LINE)
    (( ${#words[@]} < 2 )) && return 0
    local py=${words[0]} script=${words[1]}
    [[ -f "$script" ]] && grep -q "@hydra.main" "$script" 2>/dev/null || return 0
    # Hydra reads COMP_LINE as `python script.py …`: give it that form whatever python was typed
    local line="python${COMP_LINE#*"$py"}"
    local point=$(( COMP_POINT - ${#COMP_LINE} + ${#line} ))
    local choices
    choices=$(COMP_POINT=$point COMP_LINE=$line "$py" "$script" -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "${words[$COMP_CWORD]}"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _template_hydra_complete python python3 .venv/bin/python .venv/bin/python3
