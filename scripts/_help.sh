# Sourced first by every script: `bash scripts/NAME.sh --help` (or -h) prints the script's header
# comment -- its purpose on the first line, then its settings -- and exits before any set-up.
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  awk 'NR == 1 && /^#!/ {next} /^#SBATCH/ {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' \
    "${BASH_SOURCE[1]}"
  exit 0
fi
