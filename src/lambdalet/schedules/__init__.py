"""EventBridge Scheduler subset: rate/cron/at schedules that invoke lambdalet functions (service.py),
the expression parser (expressions.py) and the tables (tables.py, migration 0011)."""
from lambdalet.schedules.service import Scheduler, SchedulerProtocol, SchedulerService, build_scheduler

__all__ = ["Scheduler", "SchedulerProtocol", "SchedulerService", "build_scheduler"]
