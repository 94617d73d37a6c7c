using System.CommandLine;

namespace LbAllocator.Cli;

/// <summary>The lballocator verbs. Exit codes: 0 success, 1 invalid input, 2 usage error.</summary>
public static class CliApp
{
    public const int Ok = 0;
    public const int Invalid = 1;
    public const int Usage = 2;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var parsed = Root(stdout, stderr).Parse(args);
        var configuration = new InvocationConfiguration { Output = stdout, Error = stderr };
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                stderr.WriteLine($"lballocator: {error.Message}");
            }

            stderr.WriteLine("Run 'lballocator --help' for usage.");
            return Usage;
        }

        return parsed.Invoke(configuration);
    }

    /// <summary>Every verb and option; the install manifests' container args are checked against it.</summary>
    internal static RootCommand Root(TextWriter stdout, TextWriter stderr)
    {
        var paths = new Argument<string[]>("PATH")
        {
            Description = "Manifest files or directories (searched recursively); default: the bundled config/samples",
            Arity = ArgumentArity.ZeroOrMore,
        };
        // Otherwise a misspelt option would be taken for a file name.
        paths.Validators.Add(result =>
        {
            foreach (var token in result.Tokens.Where(t => t.Value.StartsWith('-')))
            {
                result.AddError($"unknown option {token.Value}");
            }
        });

        var kubeconfig = new Option<string?>("--kubeconfig") { Description = "The live cluster's kubeconfig (only read from): validate checks against its pools; plan --pools defaults to KUBECONFIG, then ~/.kube/config" };
        var ns = new Option<string>("--namespace", "-n") { Description = "Namespace of the live pools", DefaultValueFactory = _ => "lballocator-system" };
        var validate = new Command("validate", "Check IPAddressPool, L2Advertisement, Namespace and Service manifests; with --kubeconfig, pools and advertisements against the live pools they do not replace")
        {
            paths, kubeconfig, ns,
        };
        validate.SetAction(async (result, cancellationToken) =>
            result.GetValue(kubeconfig) is not null
                ? await LiveCommands.ValidateAsync(result.GetValue(kubeconfig), result.GetValue(paths) ?? [], result.GetValue(ns)!, stdout, stderr, cancellationToken)
                : Commands.Validate(result.GetValue(paths) ?? [], stdout, stderr));

        var output = new Option<string>("--output", "-o")
        {
            Description = "Output format: table or json",
            DefaultValueFactory = _ => "table",
        };
        output.AcceptOnlyFromAmong("table", "json");
        var proposedPools = new Option<string?>("--pools")
        {
            Description = "Dry run on the live cluster: the IPAddressPools of this file replace the live ones of the same name; lists every Service that would be renumbered, left pending or newly assigned; exit 1 if any would lose or change its address",
        };
        var metalLb = new Option<bool>("--accept-metallb-annotations") { Description = "With --pools: read MetalLB's Service annotations as the controller does with this option" };
        var plan = new Command("plan", "Show the addresses the controller would give the Services in the manifests; with --pools, what proposed pools would change on the live cluster")
        {
            paths, output, proposedPools, kubeconfig, ns, metalLb,
        };
        plan.Validators.Add(result =>
        {
            if (result.GetValue(proposedPools) is null && (result.GetValue(kubeconfig) is not null || result.GetValue(metalLb)))
            {
                result.AddError("--kubeconfig and --accept-metallb-annotations go with --pools (the dry run on a live cluster)");
            }
            else if (result.GetValue(proposedPools) is not null && (result.GetValue(paths) ?? []).Length > 0)
            {
                result.AddError("with --pools the Services come from the cluster: give no PATH");
            }
        });
        plan.SetAction(async (result, cancellationToken) =>
            result.GetValue(proposedPools) is { } file
                ? await LiveCommands.PlanAsync(result.GetValue(kubeconfig), file, result.GetValue(ns)!, result.GetValue(metalLb), result.GetValue(output) == "json", stdout, stderr, cancellationToken)
                : Commands.Plan(result.GetValue(paths) ?? [], result.GetValue(output) == "json", stdout, stderr));

        var metalLbPaths = new Argument<string[]>("PATH")
        {
            Description = "MetalLB's configuration: files or directories (searched recursively) of metallb.io/v1beta1 objects or its old ConfigMap",
            Arity = ArgumentArity.OneOrMore,
        };
        var importNamespace = new Option<string>("--namespace", "-n") { Description = "Namespace of the objects written (where the controller reads pools)", DefaultValueFactory = _ => "lballocator-system" };
        var importMetalLb = new Command("import-metallb", "Convert MetalLB's IPAddressPools, L2Advertisements and old ConfigMap to lballocator's (YAML on stdout)") { metalLbPaths, importNamespace };
        importMetalLb.SetAction(result => Commands.ImportMetalLb(result.GetValue(metalLbPaths) ?? [], result.GetValue(importNamespace)!, stdout, stderr));

        return new RootCommand("lballocator: a bare-metal LoadBalancer for Kubernetes") { validate, plan, importMetalLb, ControllerCommand.Create(stderr), SpeakerCommand.Create(stderr) };
    }
}
