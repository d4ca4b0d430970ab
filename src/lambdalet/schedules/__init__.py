"""EventBridge Scheduler subset: rate/cron/at schedules that invoke lambdalet functions (service.py),
the expression parser (expressions.py) and the tables (tables.py, migration 0011); the wire
protocol is api/scheduler_protocol.py."""
from lambdalet.schedules.service import Scheduler, SchedulerService, build_scheduler

__all__ = ["Scheduler", "SchedulerService", "build_scheduler"]
