# Log shipping: the predictors log JSON lines into the journal (predictor.nix); this forwards one
# instance's lines, as they come, to a command of your choice, in a unit `predictor-<name>-logs`.
# With a prediction log, its lines (`"type":"prediction"`) go to their own command, in a unit
# `predictor-<name>-predictions`, and not to the log's.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.predictor;
  shipped = lib.filterAttrs (
    _: instance: instance.enable && instance.logShipping.command != null
  ) cfg.instances;
  predictionsShipped = lib.filterAttrs (
    _: instance:
    instance.enable && instance.predictionLog.rate > 0 && instance.predictionLog.shipping.command != null
  ) cfg.instances;
  # The server writes each prediction line whole, starting with this (prediction_log.rs).
  predictionLine = "^{\"type\":\"prediction\"";
  grep = "${pkgs.gnugrep}/bin/grep --line-buffered";

  shipper =
    {
      unit,
      lines,
      filter,
      command,
    }:
    name: instance:
    lib.nameValuePair "predictor-${name}-${unit}" {
      description = "Ship the ${lines} of predictor-${name}";
      wantedBy = [ "multi-user.target" ];
      after = [ "systemd-journald.service" ];
      # _SYSTEMD_UNIT= matches the server's own lines only, not systemd's lines about the unit;
      # --output=cat prints each entry's MESSAGE alone (the server's JSON line, where
      # --output=json would wrap it in the journal's fields); --quiet drops the "-- Boot <id> --"
      # line journalctl prints between boots in every output mode (systemd
      # src/journal/journalctl-show.c: `if (!arg_merge && !arg_quiet)`). So the command gets JSON
      # and nothing else. The cursor file makes a restart resume after the last line journalctl
      # passed on; the first start sends the whole retained journal.
      script = ''
        set -o pipefail
        journalctl --follow --lines=all --output=cat --quiet \
          --cursor-file="$STATE_DIRECTORY/cursor" \
          _SYSTEMD_UNIT=predictor-${name}.service \
          ${filter name}| ${command instance}
      '';
      # The hardening of every unit (hardening.nix), less than the server's: no
      # RestrictAddressFamilies or MemoryDenyWriteExecute, as the command is yours and may need a
      # Unix socket or a JIT; and not PrivateUsers: it would map the systemd-journal group away, and
      # the journal with it.
      serviceConfig = import ./hardening.nix // {
        DynamicUser = true;
        # Reads the journal: the journal's files belong to this group.
        SupplementaryGroups = [ "systemd-journal" ];
        StateDirectory = "predictor-${name}-${unit}";
        Restart = "always";
        RestartSec = "5s";
      };
    };
in
{
  options.services.predictor.instances = mkOption {
    type = types.attrsOf (
      types.submodule {
        options.predictionLog.shipping.command = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = lib.literalExpression ''"''${pkgs.netcat}/bin/nc drift.example.internal 5171"'';
          description = ''
            As `logShipping.command`, for the prediction log's lines (`predictionLog.rate` above
            0), in the unit `predictor-<name>-predictions`; the log's command then gets the
            other lines only. null: they stay in the journal (and go to the log's command).
          '';
        };
        options.logShipping.command = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = lib.literalExpression ''"''${pkgs.netcat}/bin/nc logs.example.internal 5170"'';
          description = ''
            A shell command that reads this instance's JSON log lines on its standard input, one per
            line, as they are written, and sends them on (to a Vector or Logstash TCP input, a
            Fluent Bit `stdin` input, ...). It runs in the unit `predictor-<name>-logs` as a dynamic
            user that may write only to `$STATE_DIRECTORY`; the unit restarts it when it exits.
            Delivery is at least once: after a crash lines may come again; a clean stop may lose
            the lines the command had read but not yet sent. null: the lines stay in the journal.
          '';
        };
      }
    );
  };

  config = lib.mkIf (shipped != { } || predictionsShipped != { }) {
    # A shipper's unit name must not be another instance's.
    assertions =
      lib.mapAttrsToList (name: _: {
        assertion = !(cfg.instances ? "${name}-logs");
        message = "services.predictor.instances.${name}.logShipping: its unit predictor-${name}-logs would be the unit of the instance ${name}-logs; rename one of them.";
      }) shipped
      ++ lib.mapAttrsToList (name: _: {
        assertion = !(cfg.instances ? "${name}-predictions");
        message = "services.predictor.instances.${name}.predictionLog.shipping: its unit predictor-${name}-predictions would be the unit of the instance ${name}-predictions; rename one of them.";
      }) predictionsShipped;

    systemd.services =
      lib.mapAttrs' (shipper {
        unit = "logs";
        lines = "JSON logs";
        # Without the prediction lines when they have a command of their own.
        filter = name: lib.optionalString (predictionsShipped ? ${name}) "| ${grep} -v '${predictionLine}' ";
        command = instance: instance.logShipping.command;
      }) shipped
      // lib.mapAttrs' (shipper {
        unit = "predictions";
        lines = "prediction log";
        filter = _: "| ${grep} '${predictionLine}' ";
        command = instance: instance.predictionLog.shipping.command;
      }) predictionsShipped;
  };
}
