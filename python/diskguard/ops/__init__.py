"""Operations: the commands people who run shared GPU servers use from cron, systemd and monitoring.

``check`` (Nagios plugin conventions), ``du`` and ``orphans`` (who is eating the disk), ``watch`` (a
monitor with a forecast, alerts and a state file), Prometheus output, alert channels and budgets.
Each area is one module here; :mod:`diskguard.ops.commands` registers them with the ``diskguard``
command, and :mod:`diskguard.ops.options` holds the options the subcommands share (one threshold
syntax everywhere, the config file, alert channels).
"""
