using LbAllocator.Kubernetes;

namespace LbAllocator.Cli.Tests;

/// <summary>
/// import-metallb on MetalLB-format input written for these tests (its CRDs and its old ConfigMap): ours with the same
/// names, the behaviour kept where a number means something else, what is not carried over named with its place, and
/// input that cannot be converted refused with FILE:LINE:COLUMN and exit 1.
/// </summary>
public sealed class MetalLbImportTests : IDisposable
{
    private readonly ManifestDir _files = new();

    public void Dispose() => _files.Dispose();

    private const string Crds = """
        apiVersion: metallb.io/v1beta1
        kind: IPAddressPool
        metadata:
          name: first
          namespace: metallb-system
          labels:
            tier: front
        spec:
          addresses:
          - 192.0.2.0/28
          - 2001:db8::10-2001:db8::1f
          serviceAllocation:
            priority: 0
            namespaces: [web]
        ---
        apiVersion: metallb.io/v1beta1
        kind: IPAddressPool
        metadata:
          name: second
        spec:
          addresses: ["198.51.100.0/29"]
          serviceAllocation:
            priority: 5
            namespaces: [web]
          futureField: 1
        ---
        apiVersion: metallb.io/v1beta1
        kind: L2Advertisement
        metadata:
          name: all
        spec:
          ipAddressPools: [first, second]
          interfaces: [eth0]
        ---
        apiVersion: metallb.io/v1beta2
        kind: BGPPeer
        metadata:
          name: router
        spec:
          peerAddress: 192.0.2.254
        """;

    private const string ConfigMap = """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          namespace: metallb-system
          name: config
        data:
          config: |
            peers:
            - peer-address: 203.0.113.1
              peer-asn: 64501
            address-pools:
            - name: legacy
              protocol: layer2
              addresses:
              - 203.0.113.0/28
              auto-assign: false
            - name: routed
              protocol: bgp
              addresses:
              - 203.0.113.64/28
              bgp-advertisements:
              - aggregation-length: 32
        """;

    [Fact]
    public void Pools_advertisements_and_the_old_configmap_become_ours_with_what_is_not_carried_over_named()
    {
        var crds = _files.Write("crds.yaml", Crds);
        var configMap = _files.Write("cm.yaml", ConfigMap);

        var run = CliRun.Of("import-metallb", crds, configMap);

        Assert.Equal(0, run.ExitCode);
        var ours = new ManifestSet();
        ManifestReader.ReadText("out.yaml", run.Stdout, ours);
        Assert.Empty(ours.Errors);
        Assert.Equal(["first", "second", "legacy", "routed"], ours.Pools.Select(p => p.Value.Metadata.Name));
        Assert.All(ours.Pools, p => Assert.Equal("lballocator-system", p.Value.Metadata.NamespaceProperty));
        var first = ours.Pools[0].Value;
        Assert.Equal(["192.0.2.0/28", "2001:db8::10-2001:db8::1f"], first.Spec.Addresses);
        Assert.Equal("front", first.Metadata.Labels["tier"]);
        Assert.Null(first.Spec.ServiceAllocation!.Priority); // MetalLB's 0: no priority
        Assert.Equal(["web"], first.Spec.ServiceAllocation.Namespaces);
        Assert.Equal(5, ours.Pools[1].Value.Spec.ServiceAllocation!.Priority);
        Assert.False(ours.Pools[2].Value.Spec.AutoAssign);
        Assert.Equal(["203.0.113.64/28"], ours.Pools[3].Value.Spec.Addresses);

        // The CRD's advertisement, and one for the layer2 pool of the ConfigMap; none for the bgp pool.
        Assert.Equal(["all", "legacy"], ours.Advertisements.Select(a => a.Value.Metadata.Name));
        Assert.Equal(["first", "second"], ours.Advertisements[0].Value.Spec.IpAddressPools);
        Assert.Equal(["eth0"], ours.Advertisements[0].Value.Spec.Interfaces);
        Assert.Equal(["legacy"], ours.Advertisements[1].Value.Spec.IpAddressPools);

        var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(
            [
                $"{crds}:25:3: IPAddressPool/second: spec.futureField: not carried over: lballocator has no such field",
                $"{crds}:35:1: BGPPeer/router: not carried over: BGP is not supported: lballocator announces by ARP and NDP only",
                $"{configMap}:8:5: ConfigMap/config: data.config: peers: not carried over: BGP is not supported: lballocator announces by ARP and NDP only",
                $"{configMap}:21:7: ConfigMap/config: data.config: address-pools[1]: bgp-advertisements: not carried over: BGP is not supported: lballocator announces by ARP and NDP only",
            ],
            lines.Take(4));
        Assert.StartsWith($"{configMap}:17:7: ConfigMap/config: data.config: address-pools[1] (\"routed\"): protocol bgp: not carried over", lines[4]);
        Assert.Equal("converted: 4 IPAddressPool(s) and 2 L2Advertisement(s); 5 thing(s) not carried over as written", lines[5]);
    }

    [Fact]
    public void Converted_pools_give_the_addresses_MetalLB_gives_its_priority_0_sorting_last()
    {
        // Both pools admit namespace web. In MetalLB "second" (priority 5) comes first, "first" (priority 0: none) last.
        var converted = CliRun.Of("import-metallb", _files.Write("crds.yaml", Crds));
        Assert.Equal(0, converted.ExitCode);
        _files.Write("ours.yaml", converted.Stdout);
        _files.Write("services.yaml", """
            apiVersion: v1
            kind: Namespace
            metadata: {name: web}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: shop, namespace: web}
            spec: {type: LoadBalancer, ports: [{port: 80}]}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: held, namespace: web}
            spec: {type: LoadBalancer, ports: [{port: 80}]}
            status: {loadBalancer: {ingress: [{ip: 192.0.2.7}]}}
            """);

        var plan = CliRun.Of("plan", "-o", "json", Path.Combine(_files.Path, "ours.yaml"), Path.Combine(_files.Path, "services.yaml"));

        Assert.Equal(0, plan.ExitCode);
        // A new Service gets the first address of the priority-5 pool; one holding an address MetalLB gave keeps it.
        Assert.Contains("\"name\":\"shop\",\"ips\":[\"198.51.100.0\"],\"pool\":\"second\"", plan.Stdout, StringComparison.Ordinal);
        Assert.Contains("\"name\":\"held\",\"ips\":[\"192.0.2.7\"],\"pool\":\"first\"", plan.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_CIDR_with_host_bits_is_written_as_the_network_MetalLB_serves()
    {
        var file = _files.Write("hostbits.yaml", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses:\n  - 192.0.2.5/29\n  - 2001:db8::1/126\n  - 198.51.100.1-198.51.100.3\n");

        var run = CliRun.Of("import-metallb", file);

        Assert.Equal(0, run.ExitCode);
        var ours = new ManifestSet();
        ManifestReader.ReadText("out.yaml", run.Stdout, ours);
        Assert.Equal(["192.0.2.0/29", "2001:db8::/126", "198.51.100.1-198.51.100.3"], ours.Pools.Single().Value.Spec.Addresses);
        Assert.Contains($"{file}:6:5: IPAddressPool/p: \"192.0.2.5/29\" is written as 192.0.2.0/29", run.Stderr, StringComparison.Ordinal);
        Assert.Contains($"{file}:7:5: IPAddressPool/p: \"2001:db8::1/126\" is written as 2001:db8::/126", run.Stderr, StringComparison.Ordinal);
    }

    public static TheoryData<string, string, string> BadInput => new()
    {
        { "an unknown version", "apiVersion: metallb.io/v1alpha1\nkind: IPAddressPool\nmetadata: {name: p}\n", "1:1: unknown kind \"IPAddressPool\" in \"metallb.io/v1alpha1\"" },
        { "a field of the wrong type", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: 5\n", "5:14: IPAddressPool/p: " },
        { "a ConfigMap that is not MetalLB's", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\ndata: {x: y}\n", "1:1: ConfigMap/other: no data.config" },
        { "an unreadable ConfigMap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools: []\n    address-pools: []\n", "7:5: ConfigMap/config: data.config: invalid YAML: Duplicate key address-pools" },
        { "a pool of an unknown protocol", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools:\n    - name: p\n      protocol: vrrp\n      addresses: [192.0.2.0/29]\n", "7:7: ConfigMap/config: data.config: address-pools[0] (\"p\"): protocol: \"vrrp\" is not layer2 or bgp" },
        { "addresses lballocator refuses", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec:\n  addresses: [192.0.2.0/33]\n", "1:1: IPAddressPool/p: spec.addresses[0]" },
        { "YAML that is not", "apiVersion: v1\nkind: [\n", "3:1: invalid YAML" },
    };

    [Theory]
    [MemberData(nameof(BadInput))]
    public void Input_that_cannot_be_converted_names_file_line_and_column_and_exits_1(string what, string text, string expected)
    {
        var file = _files.Write("bad.yaml", text);

        var run = CliRun.Of("import-metallb", file);

        Assert.True(run.ExitCode == 1, $"{what}: exit {run.ExitCode}\n{run.Stderr}");
        Assert.Equal("", run.Stdout);
        Assert.Contains($"{file}:{expected}", run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Mutated_MetalLB_input_is_reported_never_thrown()
    {
        // The two inputs above, damaged as ManifestFuzzTests damages the samples: every case ends in exit 0, or in exit 1
        // with nothing on stdout and each line of stderr naming the file; none throws.
        var documents = new[] { Crds, ConfigMap }.Select(System.Text.Encoding.UTF8.GetBytes).ToArray();
        var file = Path.Combine(_files.Path, "fuzz.yaml");
        var outcomes = new int[2];
        for (var i = 0; i < 5_000; i++)
        {
            var random = new Random(20_261_128 + i);
            var bytes = ManifestFuzzTests.Mutate(documents[i % 2], random);
            File.WriteAllBytes(file, bytes);
            CliRun run;
            try
            {
                run = CliRun.Of("import-metallb", file);
            }
            catch (Exception e)
            {
                Assert.Fail($"case {i} threw {e}\n--- input ---\n{ManifestFuzzTests.Printable(bytes)}");
                return;
            }

            Assert.True(run.ExitCode is 0 or 1, $"case {i}: exit {run.ExitCode}\n{run.Stderr}");
            Assert.True(run.ExitCode == 0 || run.Stdout.Length == 0, $"case {i}: exit 1 with output");
            var lines = run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(
                lines.All(l => l.StartsWith(file + ":", StringComparison.Ordinal) || l.StartsWith("converted: ", StringComparison.Ordinal) || l.StartsWith("not converted: ", StringComparison.Ordinal)),
                $"case {i}: a line names no place:\n{run.Stderr}\n--- input ---\n{ManifestFuzzTests.Printable(bytes)}");
            Assert.DoesNotContain("Exception", run.Stderr, StringComparison.Ordinal);
            outcomes[run.ExitCode]++;
        }

        // Damage that left everything readable, or nothing, would test little.
        Assert.InRange(outcomes[0], 500, 4_500);
    }
}
