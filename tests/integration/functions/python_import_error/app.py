import lambdalet_no_such_module_xyz  # noqa: F401  (the point: init fails with Runtime.ImportModuleError)


def handler(event, context):
    return "unreachable"
