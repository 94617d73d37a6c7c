using k8s;
using k8s.Models;
using LbAllocator.TestApiServer;

namespace LbAllocator.Cli.Tests;

/// <summary>
/// The install on a real kube-apiserver, which judges CRD schemas (and their CEL cost) as every cluster does:
/// `kubectl apply -k deploy/`, `-k config/crd/`, the samples, `kubectl explain`, and which bad input the schema
/// itself refuses. Where the schema refuses something, `lballocator validate` refuses it offline too.
/// </summary>
public class InstallTests(KubeApiServerFixture fixture) : IClassFixture<KubeApiServerFixture>
{
    private const string Ns = "lballocator-system";
    private static readonly string Repo = InstallManifests.RepoRoot;

    private KubeApiServer Server => fixture.Server;

    [RealApiFact]
    public async Task Deploy_crds_and_every_sample_apply_and_the_samples_are_there()
    {
        await InstallAsync();
        // The CRDs alone, as the README offers them, apply too (unchanged now).
        var crds = await Server.KubectlMustAsync("apply", "-k", Path.Combine(Repo, "config", "crd"));
        Assert.Equal(3, crds.Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => l.Contains("customresourcedefinition.apiextensions.k8s.io/", StringComparison.Ordinal)));

        // The whole folder at once, as the README says, then each file on its own.
        await Server.KubectlMustAsync("apply", "-f", Path.Combine(Repo, "config", "samples"));
        foreach (var file in Directory.GetFiles(Path.Combine(Repo, "config", "samples"), "*.yaml"))
        {
            await Server.KubectlMustAsync("apply", "-f", file);
        }

        // Every object of the samples now exists on the server, under its name.
        var expected = Directory.GetFiles(Path.Combine(Repo, "config", "samples"), "*.yaml")
            .SelectMany(f => KubernetesYaml.LoadAllFromString(File.ReadAllText(f), DeployTests.OurKinds))
            .Cast<IKubernetesObject<V1ObjectMeta>>()
            .Select(o => $"{o.Kind.ToLowerInvariant()}/{o.Metadata.Name}")
            .Order(StringComparer.Ordinal).ToList();
        Assert.True(expected.Count >= 10, $"only {expected.Count} sample objects");
        var listed = new List<string>();
        foreach (var kind in expected.Select(e => e.Split('/')[0]).Distinct())
        {
            var names = await Server.KubectlMustAsync("get", kind, "-A", "-o", "name");
            listed.AddRange(names.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(n => $"{kind}/{n[(n.IndexOf('/', StringComparison.Ordinal) + 1)..]}"));
        }

        Assert.Empty(expected.Except(listed));
    }

    [RealApiFact]
    public async Task Kubectl_explain_shows_the_descriptions_of_the_crds()
    {
        await InstallAsync();
        foreach (var (resource, field, path) in new[]
        {
            ("ipaddresspool", "spec.addresses", new[] { "spec", "addresses" }),
            ("ipaddresspool", "spec.serviceAllocation", new[] { "spec", "serviceAllocation" }),
            ("l2advertisement", "spec", new[] { "spec" }),
            ("l2advertisement", "spec.preferredNodeSelectors", new[] { "spec", "preferredNodeSelectors" }),
        })
        {
            var description = Description(resource, path);
            // The published OpenAPI follows the CRD by a moment.
            var output = "";
            for (var attempt = 0; attempt < 50 && !output.Contains(description, StringComparison.Ordinal); attempt++)
            {
                output = (await Server.KubectlAsync(["explain", $"{resource}.{field}"])).Output;
                await Task.Delay(200);
            }

            Assert.True(output.Contains(description, StringComparison.Ordinal), $"kubectl explain {resource}.{field} lacks \"{description}\":\n{output}");
        }
    }

    /// <summary>What the CRD schemas refuse (kubectl's message names the field), offline validate refusing it too.</summary>
    public static TheoryData<string, string, string, string> Refused => new()
    {
        { "IPAddressPool", "no spec", "metadata: {name: p}", "spec: Required value" },
        { "IPAddressPool", "no addresses", "metadata: {name: p}\nspec: {autoAssign: true}", "spec.addresses: Required value" },
        { "IPAddressPool", "empty addresses", "metadata: {name: p}\nspec: {addresses: []}", "spec.addresses: Invalid value: 0: spec.addresses in body should have at least 1 items" },
        { "IPAddressPool", "addresses not a list", "metadata: {name: p}\nspec: {addresses: 192.0.2.0/24}", "spec.addresses: Invalid value: \"string\": spec.addresses in body must be of type array" },
        { "IPAddressPool", "an address with a zone", "metadata: {name: p}\nspec: {addresses: ['fe80::1%eth0']}", "spec.addresses[0]: Invalid value: \"fe80::1%eth0\": spec.addresses[0] in body should match" },
        { "IPAddressPool", "a word for an address", "metadata: {name: p}\nspec: {addresses: [main-range]}", "spec.addresses[0]: Invalid value: \"main-range\"" },
        { "IPAddressPool", "a repeated address", "metadata: {name: p}\nspec: {addresses: [192.0.2.1, 192.0.2.1]}", "spec.addresses[1]: Duplicate value: \"192.0.2.1\"" },
        { "IPAddressPool", "autoAssign not a boolean", "metadata: {name: p}\nspec: {addresses: [192.0.2.0/30], autoAssign: yes-please}", "spec.autoAssign: Invalid value: \"string\": spec.autoAssign in body must be of type boolean" },
        { "IPAddressPool", "a misspelt field", "metadata: {name: p}\nspec: {addresses: [192.0.2.0/30], autoAsign: false}", "unknown field \"spec.autoAsign\"" },
        { "IPAddressPool", "a namespace that is no name", "metadata: {name: p}\nspec: {addresses: [192.0.2.0/30], serviceAllocation: {namespaces: [Team_A]}}", "spec.serviceAllocation.namespaces[0]: Invalid value: \"Team_A\"" },
        { "IPAddressPool", "an unknown operator", "metadata: {name: p}\nspec: {addresses: [192.0.2.0/30], serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: app, operator: Equals, values: [a]}]}]}}", "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].operator: Unsupported value: \"Equals\"" },
        { "IPAddressPool", "In without values", "metadata: {name: p}\nspec: {addresses: [192.0.2.0/30], serviceAllocation: {namespaceSelectors: [{matchExpressions: [{key: team, operator: In}]}]}}", "values must be non-empty for In and NotIn" },
        { "IPAddressPool", "Exists with values", "metadata: {name: p}\nspec: {addresses: [192.0.2.0/30], serviceAllocation: {namespaceSelectors: [{matchExpressions: [{key: team, operator: Exists, values: [a]}]}]}}", "and empty for Exists and DoesNotExist" },
        { "L2Advertisement", "an interface alias", "metadata: {name: a}\nspec: {interfaces: ['eth0:1']}", "spec.interfaces[0]: Invalid value: \"eth0:1\"" },
        { "L2Advertisement", "a pool name that is no name", "metadata: {name: a}\nspec: {ipAddressPools: [Main]}", "spec.ipAddressPools[0]: Invalid value: \"Main\"" },
        { "L2Advertisement", "a repeated pool", "metadata: {name: a}\nspec: {ipAddressPools: [main, main]}", "spec.ipAddressPools[1]: Duplicate value: \"main\"" },
        { "L2Advertisement", "a preference with an unknown operator", "metadata: {name: a}\nspec: {preferredNodeSelectors: [{matchExpressions: [{key: zone, operator: Near, values: [a]}]}]}", "spec.preferredNodeSelectors[0].matchExpressions[0].operator: Unsupported value: \"Near\"" },
        { "L2Advertisement", "more than 8 preference tiers", "metadata: {name: a}\nspec: {preferredNodeSelectors: [{matchLabels: {z: '1'}}, {matchLabels: {z: '2'}}, {matchLabels: {z: '3'}}, {matchLabels: {z: '4'}}, {matchLabels: {z: '5'}}, {matchLabels: {z: '6'}}, {matchLabels: {z: '7'}}, {matchLabels: {z: '8'}}, {matchLabels: {z: '9'}}]}", "spec.preferredNodeSelectors: Too many: 9: must have at most 8 items" },
        { "L2Advertisement", "MetalLB's weighted preference", "metadata: {name: a}\nspec: {preferredNodeSelectors: [{weight: 100, preference: {matchLabels: {zone: a}}}]}", "unknown field \"spec.preferredNodeSelectors[0].preference\"" },
        { "L2Advertisement", "a node selector without values", "metadata: {name: a}\nspec: {nodeSelectors: [{matchExpressions: [{key: zone, operator: NotIn, values: []}]}]}", "values must be non-empty for In and NotIn" },
    };

    [RealApiTheory]
    [MemberData(nameof(Refused))]
    public async Task The_schema_refuses_bad_input_naming_the_field(string kind, string what, string body, string expected)
    {
        await InstallAsync();
        var document = Document(kind, body);
        var (code, _, error) = await DryRunAsync(document);
        Assert.True(code != 0, $"{what}: the server accepted it");
        Assert.True(error.Contains(expected, StringComparison.Ordinal), $"{what}: expected \"{expected}\" in:\n{error}");

        // validate judges an advertisement against the pools it names: give it the one they name.
        var withPools = kind == "L2Advertisement" ? document + "\n---\n" + Document("IPAddressPool", "metadata: {name: main}\nspec: {addresses: [192.0.2.0/30]}") : document;
        using var dir = new ManifestDir();
        var run = CliRun.Of("validate", dir.Write("bad.yaml", withPools));
        Assert.True(run.ExitCode == 1, $"{what}: validate exited {run.ExitCode}:\n{run.Stdout}{run.Stderr}");
    }

    /// <summary>Inputs at the edges of the schema that are valid: the server and validate both accept them.</summary>
    public static TheoryData<string, string> Accepted => new()
    {
        { "IPAddressPool", "metadata: {name: p}\nspec: {addresses: ['198.51.100.10 - 198.51.100.19', '2001:db8::10-2001:db8::1f', 2001:db8:1::/128, 203.0.113.7]}" },
        { "IPAddressPool", "metadata: {name: p}\nspec: {addresses: [192.0.2.0/30], serviceAllocation: {priority: 5, namespaces: [team-a], namespaceSelectors: [{matchExpressions: [{key: team, operator: Exists}]}], serviceSelectors: [{matchLabels: {app: web}, matchExpressions: [{key: tier, operator: NotIn, values: [db]}]}]}}" },
        { "L2Advertisement", "metadata: {name: a}\nspec: {interfaces: [eth0, bond0.100], nodeSelectors: [{matchLabels: {kubernetes.io/os: linux}}]}" },
        { "L2Advertisement", "metadata: {name: a}\nspec: {nodeSelectors: [{matchLabels: {role: lb}}], preferredNodeSelectors: [{matchLabels: {topology.kubernetes.io/zone: a}}, {matchExpressions: [{key: rack, operator: In, values: ['1', '2']}]}, {}]}" },
    };

    [RealApiTheory]
    [MemberData(nameof(Accepted))]
    public async Task Valid_edge_cases_are_accepted_by_the_schema_and_by_validate(string kind, string body)
    {
        await InstallAsync();
        var (code, _, error) = await DryRunAsync(Document(kind, body));
        Assert.True(code == 0, $"the server refused {kind} {body}:\n{error}");
        using var dir = new ManifestDir();
        var run = CliRun.Of("validate", dir.Write("ok.yaml", Document(kind, body)));
        Assert.True(run.ExitCode == 0, $"validate refused {kind} {body}:\n{run.Stdout}{run.Stderr}");
    }

    /// <summary>Installs deploy/ once per server (kubectl apply is idempotent) and waits for the CRDs.</summary>
    private async Task InstallAsync()
    {
        await Server.KubectlMustAsync("apply", "-k", Path.Combine(Repo, "deploy"));
        await Server.KubectlMustAsync("wait", "--for", "condition=established", "--timeout=60s",
            "crd/ipaddresspools.lballocator.io", "crd/l2advertisements.lballocator.io", "crd/servicel2statuses.lballocator.io");
    }

    private Task<(int Code, string Output, string Error)> DryRunAsync(string document) =>
        Server.KubectlAsync(["apply", "--dry-run=server", "-f", "-"], stdin: document);

    private static string Document(string kind, string body) =>
        $"apiVersion: lballocator.io/v1alpha1\nkind: {kind}\n{body.Replace("metadata: {name: ", $"metadata: {{namespace: {Ns}, name: ", StringComparison.Ordinal)}\n";

    /// <summary>The description of a field, read from the CRD YAML itself.</summary>
    private static string Description(string resource, string[] path)
    {
        var crd = KubernetesYaml.Deserialize<V1CustomResourceDefinition>(File.ReadAllText(Path.Combine(Repo, "config", "crd", $"lballocator.io_{resource}s.yaml")));
        var schema = crd.Spec.Versions[0].Schema.OpenAPIV3Schema;
        foreach (var part in path)
        {
            schema = schema.Properties[part];
        }

        // kubectl wraps long lines: compare the first words only.
        return string.Join(' ', schema.Description.Split(' ').Take(4));
    }
}
