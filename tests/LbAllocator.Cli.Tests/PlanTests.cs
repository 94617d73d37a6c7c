using System.Text.Json;

namespace LbAllocator.Cli.Tests;

public class PlanTests
{
    [Fact]
    public void Plan_on_the_bundled_samples_shows_every_kind_of_outcome()
    {
        var run = CliRun.Of("plan");

        Assert.Equal(0, run.ExitCode);
        Assert.Equal("", run.Stderr);
        var lines = run.Stdout.Split('\n');
        Assert.StartsWith("NAMESPACE", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("default", StringComparison.Ordinal) && l.Contains(" web ", StringComparison.Ordinal) && l.Contains("192.0.2.1 ", StringComparison.Ordinal) && l.Contains(" main", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains(" legacy ", StringComparison.Ordinal) && l.Contains("<pending>", StringComparison.Ordinal) && l.Contains("requested IP 198.51.100.50 is not in any pool", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains(" internal ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("POOL", StringComparison.Ordinal) && l.Contains("IPv6 AVAILABLE", StringComparison.Ordinal));
    }

    [Fact]
    public void Plan_json_on_the_samples_gives_the_documented_assignments()
    {
        var run = CliRun.Of("plan", "-o", "json");

        Assert.Equal(0, run.ExitCode);
        using var doc = JsonDocument.Parse(run.Stdout);
        var services = doc.RootElement.GetProperty("services").EnumerateArray()
            .ToDictionary(s => s.GetProperty("namespace").GetString() + "/" + s.GetProperty("name").GetString());
        string Ips(string key) => string.Join(",", services[key].GetProperty("ips").EnumerateArray().Select(i => i.GetString()));

        Assert.Equal("192.0.2.1", Ips("default/web"));
        Assert.Equal("198.51.100.10", Ips("default/api"));
        Assert.Equal("reserved", services["default/batch"].GetProperty("pool").GetString());
        Assert.Equal(Ips("default/dns-tcp"), Ips("default/dns-udp"));
        Assert.Equal("203.0.113.1,2001:db8:2::10", Ips("default/shop"));
        Assert.Equal("2001:db8:1::", Ips("default/metrics"));
        Assert.Equal("192.0.2.128", Ips("team-a/dashboard"));
        Assert.Equal("192.0.2.77", Ips("default/restored"));
        Assert.Equal("", Ips("default/legacy"));
        Assert.Equal("requested IP 198.51.100.50 is not in any pool", services["default/legacy"].GetProperty("error").GetString());
        Assert.Equal(JsonValueKind.Null, services["default/web"].GetProperty("error").ValueKind);

        var ipv6 = doc.RootElement.GetProperty("pools").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "ipv6");
        Assert.Equal("18446744073709551615", ipv6.GetProperty("availableIPv6").GetRawText());
        var main = doc.RootElement.GetProperty("pools").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "main");
        // 192.0.2.0/25 less 192.0.2.0 (avoidBuggyIPs); the shared DNS address counts once.
        Assert.Equal(3, main.GetProperty("assignedIPv4").GetInt32());
        Assert.Equal(124, main.GetProperty("availableIPv4").GetInt32());
    }

    [Fact]
    public void Plan_json_has_exactly_the_documented_shape()
    {
        using var dir = new ManifestDir();
        dir.Write("all.yaml", ManifestDir.Pool + "\n---\n" + ManifestDir.Service("web"));

        var run = CliRun.Of("plan", dir.Path, "-o", "json");

        Assert.Equal(0, run.ExitCode);
        Assert.Equal(
            """{"services":[{"namespace":"default","name":"web","ips":["192.0.2.0"],"pool":"main","error":null}],"pools":[{"name":"main","assignedIPv4":1,"availableIPv4":3,"assignedIPv6":0,"availableIPv6":0}]}""",
            run.Stdout.TrimEnd());
    }

    [Fact]
    public void Services_that_carry_addresses_are_planned_first_and_keep_them()
    {
        using var dir = new ManifestDir();
        dir.Write("a.yaml", ManifestDir.Pool);
        // "new" comes first in the file but "old" already holds 192.0.2.0, so "new" gets the next one.
        dir.Write("b.yaml", ManifestDir.Service("new") + "\n---\n" + ManifestDir.Service("old") + """

            status:
              loadBalancer:
                ingress:
                  - ip: 192.0.2.0
            """);

        var run = CliRun.Of("plan", dir.Path, "-o", "json");

        using var doc = JsonDocument.Parse(run.Stdout);
        var ips = doc.RootElement.GetProperty("services").EnumerateArray()
            .ToDictionary(s => s.GetProperty("name").GetString()!, s => s.GetProperty("ips")[0].GetString());
        Assert.Equal("192.0.2.0", ips["old"]);
        Assert.Equal("192.0.2.1", ips["new"]);
        // Output stays in file order.
        Assert.Equal("new", doc.RootElement.GetProperty("services")[0].GetProperty("name").GetString());
    }

    /// <summary>A Service of the default namespace, with the status addresses it carries and any spec lines.</summary>
    private static string Held(string name, string[] ips, string spec = "", string annotations = "") => $$"""
        apiVersion: v1
        kind: Service
        metadata:
          name: {{name}}
          namespace: default
          annotations: {{{annotations}}}
        spec:
          type: LoadBalancer
          ports: [{port: 80}]
        {{spec}}
        status:
          loadBalancer:
            ingress: [{{string.Join(", ", ips.Select(ip => $"{{ip: \"{ip}\"}}"))}}]
        """;

    private static Dictionary<string, string> PlanOf(string manifests)
    {
        using var dir = new ManifestDir();
        dir.Write("all.yaml", manifests);
        var run = CliRun.Of("plan", dir.Path, "-o", "json");
        Assert.True(run.ExitCode == 0, run.Stderr);
        using var doc = JsonDocument.Parse(run.Stdout);
        return doc.RootElement.GetProperty("services").EnumerateArray().ToDictionary(
            s => s.GetProperty("name").GetString()!,
            s => string.Join(",", s.GetProperty("ips").EnumerateArray().Select(i => i.GetString())) is { Length: > 0 } ips ? ips : "error: " + s.GetProperty("error").GetString());
    }

    private static IEnumerable<List<T>> Permutations<T>(List<T> items) =>
        items.Count <= 1 ? [items] : items.SelectMany((item, i) => Permutations(items.Where((_, j) => j != i).ToList()).Select(rest => (List<T>)[item, .. rest]));

    [Fact]
    public void Held_addresses_are_kept_whatever_the_file_order()
    {
        // The issue's case: "stale" holds an address in no pool; it used to take "old"'s address when listed first.
        const string Pool = """
            apiVersion: lballocator.io/v1alpha1
            kind: IPAddressPool
            metadata: {name: p}
            spec: {addresses: [203.0.113.0/29]}
            """;
        List<(string Name, string Yaml)> services =
        [
            ("stale", Held("stale", ["198.51.100.9"])),
            ("new1", Held("new1", [])),
            ("old", Held("old", ["203.0.113.0"])),
            ("old2", Held("old2", ["203.0.113.5"])),
        ];

        foreach (var order in Permutations(services))
        {
            var plan = PlanOf(string.Join("\n---\n", order.Select(s => s.Yaml).Prepend(Pool)));
            var names = string.Join(" ", order.Select(s => s.Name));

            Assert.True(plan["old"] == "203.0.113.0", names);
            Assert.True(plan["old2"] == "203.0.113.5", names);
            // Those without a valid address are served in file order.
            Assert.True(order.Where(s => s.Name is "stale" or "new1").Select(s => plan[s.Name]).SequenceEqual(["203.0.113.1", "203.0.113.2"]), names);
        }
    }

    [Fact]
    public void A_restart_plan_is_one_result_for_shuffled_input()
    {
        const string Pool = """
            apiVersion: lballocator.io/v1alpha1
            kind: IPAddressPool
            metadata: {name: p}
            spec: {addresses: [203.0.113.0/29, 2001:db8::/125]}
            """;
        List<string> services =
        [
            Held("old", ["203.0.113.0"]),
            // PreferDualStack holding only IPv4: tops up with an IPv6 address nobody holds, never "v6"'s.
            Held("prefer", ["203.0.113.1"], "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6]"),
            Held("v6", ["2001:db8::"], "  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv6]"),
            // Edited while no controller ran, to request "old"'s address: refused, as in steady state.
            Held("edited", ["203.0.113.2"], annotations: "lballocator.io/loadBalancerIPs: 203.0.113.0"),
            Held("stale", ["198.51.100.9"]),
        ];

        for (var seed = 1; seed <= 10; seed++)
        {
            var order = services.ToArray();
            new Random(seed).Shuffle(order);
            var plan = PlanOf(string.Join("\n---\n", order.Prepend(Pool)));

            Assert.Equal("203.0.113.0", plan["old"]);
            Assert.Equal("203.0.113.1,2001:db8::1", plan["prefer"]);
            Assert.Equal("2001:db8::", plan["v6"]);
            Assert.Equal("error: IP 203.0.113.0 is used by default/old and cannot be shared: this Service has no lballocator.io/allow-shared-ip annotation", plan["edited"]);
            Assert.Equal("203.0.113.2", plan["stale"]);
        }
    }

    [Theory]
    [InlineData("lballocator.io/address-pool: v6-only")]
    [InlineData("")]
    public void Plan_gives_PreferDualStack_an_IPv6_address_when_the_pools_have_no_IPv4(string annotations)
    {
        var plan = PlanOf($"""
            apiVersion: lballocator.io/v1alpha1
            kind: IPAddressPool
            metadata: {"{"}name: v6-only{"}"}
            spec: {"{"}addresses: [2001:db8::/127]{"}"}
            ---
            {Held("dual", [], "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6]", annotations)}
            ---
            {Held("holder", ["2001:db8::1"], "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6]")}
            """);

        Assert.Equal("2001:db8::", plan["dual"]);
        Assert.Equal("2001:db8::1", plan["holder"]);
    }

    [Fact]
    public void Plan_reads_a_kubectl_list_and_reports_exhaustion()
    {
        using var dir = new ManifestDir();
        dir.Write("pool.yaml", ManifestDir.Pool);
        var items = string.Join("\n", Enumerable.Range(0, 5).Select(i => $"""
              - apiVersion: v1
                kind: Service
                metadata: {"{"}name: s{i}, namespace: default{"}"}
                spec:
                  type: LoadBalancer
                  ports: [{"{"}port: 80{"}"}]
            """));
        dir.Write("list.yaml", "apiVersion: v1\nkind: List\nitems:\n" + items + "\n");

        var run = CliRun.Of("plan", dir.Path);

        Assert.Equal(0, run.ExitCode);
        Assert.Contains("no available IPs in pool \"main\" (4 of 4 assigned)", run.Stdout, StringComparison.Ordinal);
        Assert.Equal(4, run.Stdout.Split('\n').Count(l => l.StartsWith("default", StringComparison.Ordinal) && l.TrimEnd().EndsWith(" main", StringComparison.Ordinal)));
    }

    [Fact]
    public void Plan_reads_json_manifests_in_flow_style()
    {
        using var dir = new ManifestDir();
        dir.Write("all.json", """
            {"apiVersion": "v1", "kind": "List", "items": [
              {"apiVersion": "lballocator.io/v1alpha1", "kind": "IPAddressPool", "metadata": {"name": "j"}, "spec": {"addresses": ["192.0.2.8/29"]}},
              {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "x"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
            ]}
            """);

        var run = CliRun.Of("plan", dir.Path, "-o", "json");

        Assert.Equal(0, run.ExitCode);
        Assert.Contains("""{"namespace":"x","name":"s","ips":["192.0.2.8"],"pool":"j","error":null}""", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Plan_warns_about_an_invalid_pool_and_uses_the_valid_ones()
    {
        using var dir = new ManifestDir();
        var broken = dir.Write("broken.yaml", """
            apiVersion: lballocator.io/v1alpha1
            kind: IPAddressPool
            metadata:
              name: broken
            spec:
              addresses: [192.0.2.1/24]
            """);
        dir.Write("good.yaml", ManifestDir.Pool + "\n---\n" + ManifestDir.Service("web"));

        var run = CliRun.Of("plan", dir.Path);

        Assert.Equal(0, run.ExitCode);
        Assert.Contains($"warning: {broken}: IPAddressPool/broken: spec.addresses[0]: \"192.0.2.1/24\" has host bits set", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("192.0.2.0", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Plan_refuses_broken_yaml_with_file_and_position()
    {
        using var dir = new ManifestDir();
        var file = dir.Write("bad.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: [oops\n");

        var run = CliRun.Of("plan", file);

        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"{file}:", run.Stderr, StringComparison.Ordinal);
        Assert.Contains("invalid YAML", run.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.Stderr, StringComparison.Ordinal);
        Assert.Equal("", run.Stdout);
    }
}
