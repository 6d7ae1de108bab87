"""Model code: layers, HRM, the recurrence schedules and the ACT carry."""
