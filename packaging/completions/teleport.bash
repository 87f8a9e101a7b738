# bash completion for teleport(1): commands, flags, and the caller's job ids.
#
# Job ids come from `teleport list --json`, run with the connection flags
# already on the command line (and the TELEPORT_* environment), parsed with
# sed: the CLI prints one job object a line, starting with its "id".

# _teleport_conn_flags: the connection flags of the current command line,
# as words for another teleport run, in _teleport_conn.
_teleport_conn_flags() {
  _teleport_conn=()
  local i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    case $w in
    --cacert | --cert | --key | --addr | --context)
      # "--addr=HOST:PORT" arrives split at "=" (and ":") by COMP_WORDBREAKS.
      if [ "${COMP_WORDS[i + 1]:-}" = "=" ]; then
        _teleport_conn+=("$w" "${COMP_WORDS[i + 2]:-}${COMP_WORDS[i + 3]:-}${COMP_WORDS[i + 4]:-}")
      else
        _teleport_conn+=("$w" "${COMP_WORDS[i + 1]:-}")
      fi
      ;;
    --cacert=* | --cert=* | --key=* | --addr=* | --context=*) _teleport_conn+=("$w") ;;
    esac
  done
}

# _teleport_job_ids: the ids of the caller's jobs, one a line.
_teleport_job_ids() {
  _teleport_conn_flags
  local to=()
  command -v timeout >/dev/null 2>&1 && to=(timeout 5)
  "${to[@]}" "${COMP_WORDS[0]}" "${_teleport_conn[@]}" list --json 2>/dev/null |
    sed -n 's/^ *{"id":"\([^"\\]*\)".*/\1/p'
}

_teleport() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local prev=${COMP_WORDS[COMP_CWORD - 1]:-}
  local commands="start status output wait kill stop rm list health config help"
  local conn="--cacert --cert --key --addr --context"
  local global="$conn --help --version"
  COMPREPLY=()

  # The argument of a flag.
  case $prev in
  --cacert | --cert | --key)
    COMPREPLY=($(compgen -f -- "$cur"))
    return 0
    ;;
  --addr | --context | -e | --env | -C | --dir | --memory | --cpus | --io-read | --io-write | --pids | \
    --timeout | --tail | -n | --from)
    return 0
    ;;
  -s | --signal)
    COMPREPLY=($(compgen -W "TERM KILL INT HUP QUIT USR1 USR2 STOP CONT" -- "$cur"))
    return 0
    ;;
  --state)
    COMPREPLY=($(compgen -W "running finished" -- "$cur"))
    return 0
    ;;
  --isolate)
    COMPREPLY=($(compgen -W "pid mount net pid,mount pid,net mount,net pid,mount,net" -- "$cur"))
    return 0
    ;;
  esac

  # The command: the first word that is neither a flag nor a flag's value.
  local i w cmd="" nargs=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    if [ -z "$cmd" ]; then
      case $w in
      --cacert | --cert | --key | --addr | --context) ((i++)) ;;
      -*) ;;
      *) cmd=$w ;;
      esac
    else
      case $w in
      --cacert | --cert | --key | --addr | --context | -e | --env | -C | --dir | --memory | \
        --cpus | --io-read | --io-write | --pids | --isolate | --timeout | --tail | -n | \
        --from | -s | --signal | --state) ((i++)) ;;
      --) [ "$cmd" = start ] && nargs=$((nargs + 1)) ;;
      -*) ;;
      *) nargs=$((nargs + 1)) ;;
      esac
    fi
  done

  if [ -z "$cmd" ]; then
    case $cur in
    -*) COMPREPLY=($(compgen -W "$global -h" -- "$cur")) ;;
    *) COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
    esac
    return 0
  fi

  case $cmd in
  start)
    if [ "$nargs" -gt 0 ]; then
      # Past CMD everything is the job's: its own files, most likely.
      COMPREPLY=($(compgen -f -- "$cur"))
    elif [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "-l --listen -e --env -C --dir --json --timeout --memory --cpus \
        --io-read --io-write --pids --isolate -- $conn --help" -- "$cur"))
    else
      COMPREPLY=($(compgen -c -- "$cur"))
    fi
    ;;
  status | stop | output | kill | rm | wait)
    if [[ $cur == -* ]]; then
      local flags
      case $cmd in
      output) flags="--no-follow --tail -n --from" ;;
      stop) flags="--timeout --json" ;;
      status) flags="--json" ;;
      kill) flags="-s --signal" ;;
      wait) flags="--timeout" ;;
      rm) flags="" ;;
      esac
      COMPREPLY=($(compgen -W "$flags $conn --help" -- "$cur"))
    elif [ "$nargs" -eq 0 ] || [ "$cmd" = wait ]; then
      # wait takes several ids; the others one.
      COMPREPLY=($(compgen -W "$(_teleport_job_ids)" -- "$cur"))
    fi
    ;;
  list | ls)
    [[ $cur == -* ]] && COMPREPLY=($(compgen -W "--json -q --quiet --state --no-trunc $conn --help" -- "$cur"))
    ;;
  help)
    [ "$nargs" -eq 0 ] && COMPREPLY=($(compgen -W "$commands" -- "$cur"))
    ;;
  esac
  return 0
}

complete -F _teleport teleport
