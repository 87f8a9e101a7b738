# fish completion for teleport(1): commands, flags, and the caller's job ids
# (from `teleport list --json` with the connection flags already typed).

function __teleport_job_ids
    set -l conn
    set -l words (commandline -opc)
    set -l n (count $words)
    for i in (seq 2 $n)
        switch $words[$i]
            case --cacert --cert --key --addr
                if test $i -lt $n
                    set -a conn $words[$i] $words[(math $i + 1)]
                end
            case '--cacert=*' '--cert=*' '--key=*' '--addr=*'
                set -a conn $words[$i]
        end
    end
    set -l to
    command -q timeout; and set to timeout 5
    $to $words[1] $conn list --json 2>/dev/null | sed -n 's/^ *{"id":"\([^"\\\\]*\)".*/\1/p'
end

set -l cmds start status output wait kill stop rm list ls health config help
complete -c teleport -f
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a start -d 'Start a job'
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a status -d 'Show a job'
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a output -d "Print and follow a job's output"
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a wait -d 'Wait until jobs end'
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a kill -d 'Send a signal to a job'
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a stop -d 'Stop a job'
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a rm -d 'Delete a finished job'
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a list -d 'List your jobs'
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -a help -d 'Show help'

complete -c teleport -l cacert -r -F -d 'CA certificate the server certificate must be signed by'
complete -c teleport -l cert -r -F -d 'Your client certificate'
complete -c teleport -l key -r -F -d 'The private key of --cert'
complete -c teleport -l addr -x -d 'The server, HOST:PORT'
complete -c teleport -l context -x -d 'A context of the config file'
complete -c teleport -s h -l help -d 'Show help'
complete -c teleport -n "not __fish_seen_subcommand_from $cmds" -l version -d 'Print the version'

complete -c teleport -n '__fish_seen_subcommand_from start' -s l -l listen -d "Stream the output, exit with the job's code"
complete -c teleport -n '__fish_seen_subcommand_from start' -s e -l env -x -d "KEY=VALUE for the job's environment"
complete -c teleport -n '__fish_seen_subcommand_from start' -s C -l dir -x -d 'Run the job in DIR on the server'
complete -c teleport -n '__fish_seen_subcommand_from start' -l memory -x -d 'Memory limit, e.g. 512M'
complete -c teleport -n '__fish_seen_subcommand_from start' -l cpus -x -d 'CPU limit, e.g. 0.5'
complete -c teleport -n '__fish_seen_subcommand_from start' -l io-read -x -d 'Read bandwidth, e.g. 10M'
complete -c teleport -n '__fish_seen_subcommand_from start' -l io-write -x -d 'Write bandwidth, e.g. 10M'
complete -c teleport -n '__fish_seen_subcommand_from start' -l pids -x -d 'Processes and threads at once'
complete -c teleport -n '__fish_seen_subcommand_from start' -l isolate -x -a 'pid mount net' -d 'Namespaces of its own'
complete -c teleport -n '__fish_seen_subcommand_from start' -a '(__fish_complete_subcommand --fcs-skip=2)'
complete -c teleport -n '__fish_seen_subcommand_from start status stop list ls' -l json -d 'Print JSON'
complete -c teleport -n '__fish_seen_subcommand_from start' -l timeout -x -d 'The longest the job may run'
complete -c teleport -n '__fish_seen_subcommand_from stop' -l timeout -x -d 'Grace before SIGKILL'
complete -c teleport -n '__fish_seen_subcommand_from wait' -l timeout -x -d 'Give up after'
complete -c teleport -n '__fish_seen_subcommand_from output' -l no-follow -d 'What there is now, then end'
complete -c teleport -n '__fish_seen_subcommand_from output' -s n -l tail -x -d 'The last N lines'
complete -c teleport -n '__fish_seen_subcommand_from output' -l from -x -d 'Start at this byte'
complete -c teleport -n '__fish_seen_subcommand_from kill' -s s -l signal -x -a 'TERM KILL INT HUP QUIT USR1 USR2 STOP CONT' -d 'The signal'
complete -c teleport -n '__fish_seen_subcommand_from list ls' -s q -l quiet -d 'Ids only'
complete -c teleport -n '__fish_seen_subcommand_from list ls' -l state -x -a 'running finished' -d 'Running or finished jobs'
complete -c teleport -n '__fish_seen_subcommand_from list ls' -l no-trunc -d 'Never cut a cell'
complete -c teleport -n '__fish_seen_subcommand_from status stop output wait kill rm' -a '(__teleport_job_ids)' -d 'Job id'
complete -c teleport -n '__fish_seen_subcommand_from help' -a "$cmds"
