namespace LbAllocator.Cli.Tests;

public class ValidateTests
{
    [Fact]
    public void The_bundled_samples_are_valid()
    {
        var run = CliRun.Of("validate");

        Assert.Equal(0, run.ExitCode);
        Assert.StartsWith("valid: 5 IPAddressPool(s), 1 L2Advertisement(s), 2 Namespace(s)", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void The_samples_directory_read_from_disk_is_valid_too()
    {
        var samples = Path.Combine(RepositoryRoot(), "config", "samples");

        var run = CliRun.Of("validate", samples);

        Assert.Equal(0, run.ExitCode);
    }

    public static TheoryData<string, string> InvalidInputs => new()
    {
        {
            "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: []\n",
            "IPAddressPool/p: spec.addresses: must list at least one CIDR, range or address"
        },
        {
            "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/33]\n",
            "IPAddressPool/p: spec.addresses[0]: \"192.0.2.0/33\": prefix length must be a number from 0 to 32 for IPv4"
        },
        {
            "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.9-192.0.2.1]\n",
            "IPAddressPool/p: spec.addresses[0]: \"192.0.2.9-192.0.2.1\": start 192.0.2.9 is above end 192.0.2.1"
        },
        {
            "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: a}\nspec:\n  addresses: [192.0.2.0/24]\n---\napiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: b}\nspec:\n  addresses: [192.0.2.128/25]\n",
            "IPAddressPool/b: spec.addresses[0]: 192.0.2.128/25 overlaps 192.0.2.0/24 of pool \"a\" at 192.0.2.128/25"
        },
        {
            "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/24]\n  serviceAllocation:\n    namespaces: [a, a]\n",
            "IPAddressPool/p: spec.serviceAllocation.namespaces[1]: duplicate namespace \"a\""
        },
        {
            "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/24]\n  serviceAllocation:\n    serviceSelectors:\n      - matchExpressions: [{key: app, operator: Is, values: [x]}]\n",
            "IPAddressPool/p: spec.serviceAllocation.serviceSelectors[0].matchExpressions[0].operator: \"Is\" is not one of In, NotIn, Exists, DoesNotExist"
        },
        {
            "apiVersion: lballocator.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec:\n  ipAddressPools: [missing]\n",
            "L2Advertisement/l2: spec.ipAddressPools[0]: IPAddressPool \"missing\" does not exist"
        },
        {
            "apiVersion: lballocator.io/v1alpha1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec:\n  preferredNodeSelectors:\n    - matchLabels: {zone: a}\n    - matchExpressions: [{key: zone, operator: In, values: [a]}]\n",
            "L2Advertisement/l2: spec.preferredNodeSelectors[1]: duplicate selector (zone in (a)), same as an earlier entry"
        },
        {
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations: {lballocator.io/loadBalancerIPs: 192.0.2.300}\nspec:\n  type: LoadBalancer\n",
            "Service/default/web: annotation lballocator.io/loadBalancerIPs: \"192.0.2.300\" is not a valid IP address"
        },
        {
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations: {lballocator.io/loadBalancerIPs: 192.0.2.1}\nspec:\n  type: LoadBalancer\n  loadBalancerIP: 192.0.2.1\n",
            "Service/default/web: both annotation lballocator.io/loadBalancerIPs and spec.loadBalancerIP are set"
        },
    };

    [Theory]
    [MemberData(nameof(InvalidInputs))]
    public void Each_problem_is_printed_as_file_kind_name_message(string manifest, string expected)
    {
        using var dir = new ManifestDir();
        var file = dir.Write("input.yaml", manifest);

        var run = CliRun.Of("validate", file);

        Assert.Equal(1, run.ExitCode);
        Assert.Contains($"{file}: {expected}", run.Stdout, StringComparison.Ordinal);
    }

    public static TheoryData<string, int, string> UnreadableInputs => new()
    {
        { "apiVersion: v1\nkind: Service\nmetadata:\n  name: [x\n", 5, "invalid YAML" },
        { "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", 1, "unknown kind \"Widget\" in \"example.com/v1\"" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n- just\n- a list\n", 5, "expected a Kubernetes object" },
        { "apiVersion: lballocator.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/24]\n  autoAssing: false\n", 6, "IPAddressPool: unknown field \"autoAssing\"" },
        { "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports:\n    - port: eighty\n", 6, "Service:" },
        { "kind: Service\nmetadata: {name: a}\n", 1, "object has no apiVersion or kind" },
    };

    [Theory]
    [MemberData(nameof(UnreadableInputs))]
    public void Unreadable_input_gets_one_line_with_file_and_line(string manifest, int line, string message)
    {
        using var dir = new ManifestDir();
        var file = dir.Write("input.yaml", manifest);

        var run = CliRun.Of("validate", file);

        Assert.Equal(1, run.ExitCode);
        var first = run.Stdout.Split('\n')[0];
        Assert.StartsWith($"{file}:{line}:", first, StringComparison.Ordinal);
        Assert.Contains(message, first, StringComparison.Ordinal);
        Assert.DoesNotContain(" at LbAllocator", run.Stdout + run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_path_is_an_error_naming_it()
    {
        var run = CliRun.Of("validate", "/nonexistent/lballocator.yaml");

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("/nonexistent/lballocator.yaml: no such file or directory", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Directories_are_read_recursively_and_other_files_skipped()
    {
        using var dir = new ManifestDir();
        dir.Write("pools/main.yaml", ManifestDir.Pool);
        dir.Write("apps/deep/web.yml", ManifestDir.Service("web"));
        dir.Write("notes.txt", "not yaml: [");

        var run = CliRun.Of("validate", dir.Path);

        Assert.Equal(0, run.ExitCode);
        Assert.Contains("1 IPAddressPool(s), 0 L2Advertisement(s), 0 Namespace(s), 1 Service(s)", run.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("plan", "-o", "xml")]
    [InlineData("frobnicate")]
    [InlineData("validate", "--no-such-flag")]
    [InlineData]
    public void Usage_errors_exit_with_2(params string[] args)
    {
        var run = CliRun.Of(args);

        Assert.Equal(2, run.ExitCode);
        Assert.Contains("lballocator:", run.Stderr, StringComparison.Ordinal);
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LbAllocator.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }
}
