package actors

// ForgetModels drops the capabilities rt's providers learned of their
// models from their servers and checks every provider at once, which asks
// for them again and refreshes the models each server lists: a config
// reload (SIGHUP) calls it, so that a model updated on its server is seen
// without a restart. Capabilities set in the config are kept. A function,
// not a method: Runtime is at its size.
func ForgetModels(rt *Runtime) { rt.providers.Forget() }
