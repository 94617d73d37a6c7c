using LbAllocator.Cli;
using LbAllocator.Kubernetes.Crds;

// First, before the Kubernetes client serializes anything: the published binary is NativeAOT, where the client
// handles our kinds only through the JSON metadata generated for them at build time.
CrdJson.Register();
return CliApp.Run(args, Console.Out, Console.Error);
