using LbAllocator.Core;

namespace LbAllocator.Core.Tests;

/// <summary>
/// A Service is served only once its namespace is known (the Services and Namespaces watches deliver in any
/// order, and the namespace's labels may decide its pool); meanwhile what it validly holds stays its own. When the
/// namespace's labels change, its Services are re-judged by the keep-while-admitted rule of pool edits.
/// </summary>
public class NamespaceTests
{
    private static readonly Dictionary<string, string> Gold = new() { ["tier"] = "gold" };
    private static readonly Dictionary<string, string> NoLabels = [];

    /// <summary>"gold" takes Services of namespaces labelled tier=gold, first; "fallback" takes anyone.</summary>
    private static Pool[] Pools()
    {
        var config = ConfigValidator.Validate(
        [
            new PoolSpec("gold", ["192.0.2.0/29"], ServiceAllocation: new ServiceAllocationSpec(
                Priority: 1,
                NamespaceSelectors: [new LabelSelectorSpec(new Dictionary<string, string> { ["tier"] = "gold" })])),
            new PoolSpec("fallback", ["198.51.100.0/29"]),
        ], []);
        Assert.Empty(config.Problems);
        return [.. config.Pools];
    }

    /// <summary>A Service in namespace "team"; null labels: the namespace is not known yet.</summary>
    private static ServiceInfo Svc(string name, IReadOnlyDictionary<string, string>? namespaceLabels, string[]? holds = null) => new()
    {
        Namespace = "team",
        Name = name,
        NamespaceLabels = namespaceLabels,
        IngressIps = holds ?? [],
        Ports = [new ServicePort("TCP", 80)],
    };

    private static string Show(AllocationOutcome o) => $"{o.GetType().Name} {string.Join(",", o.Ips)}".TrimEnd();

    [Fact]
    public void A_service_whose_namespace_is_not_known_gets_nothing_until_it_is_then_is_judged_by_its_labels()
    {
        var allocator = new Allocator(pools: Pools());

        var early = allocator.Reconcile(Svc("web", namespaceLabels: null));

        // It used to be judged with no labels and land in the fallback pool, which it then kept.
        Assert.Equal("AwaitingNamespace", Show(early));
        Assert.Equal("namespace \"team\" is not known yet", early.Problem);
        Assert.Equal(new PoolStats("fallback", 0, 8, 0, 0), allocator.GetStats("fallback"));
        Assert.Empty(allocator.RetryPending()); // nor does anything freed elsewhere serve it

        var known = allocator.Reconcile(Svc("web", Gold));

        Assert.Equal("Assigned 192.0.2.0", Show(known));
        Assert.Equal("gold", known.Pool);
    }

    [Fact]
    public void What_it_validly_holds_stays_its_own_while_its_namespace_is_not_known()
    {
        var allocator = new Allocator(pools: Pools());

        // At a start its namespace is not listed yet: the address it carries in its status is claimed all the same,
        // whether or not it comes first (the gold pool's selector gets the benefit of the doubt).
        var start = allocator.ReconcileAll([Svc("other", Gold, holds: ["192.0.2.0"]) with { Namespace = "gold-team" }, Svc("web", null, holds: ["192.0.2.1"])]);
        Assert.Equal(["Assigned 192.0.2.0", "AwaitingNamespace 192.0.2.1"], start.Select(Show));

        // Asking for it by address is refused, and the next Service of the gold pool passes it over.
        var thief = allocator.Reconcile(Svc("thief", Gold) with { Annotations = new Dictionary<string, string> { [ServiceAnnotations.LoadBalancerIPs] = "192.0.2.1" } });
        Assert.Equal("Pending", Show(thief));
        Assert.StartsWith("IP 192.0.2.1 is used by team/web", thief.Problem, StringComparison.Ordinal);
        Assert.Equal("Assigned 192.0.2.2", Show(allocator.Reconcile(Svc("next", Gold))));

        // A pool edit keeps it too, and its namespace seen at last with the labels the pool wants changes nothing.
        Assert.DoesNotContain(allocator.SetPools(Pools()), o => o.Name == "web");
        var known = allocator.Reconcile(Svc("web", Gold, holds: ["192.0.2.1"]));
        Assert.Equal("Assigned 192.0.2.1", Show(known));
        Assert.False(known.Changed);
    }

    [Fact]
    public void A_held_address_in_no_pool_or_of_a_pool_not_admitting_its_namespace_by_name_is_not_kept_meanwhile()
    {
        var config = ConfigValidator.Validate([new PoolSpec("named", ["192.0.2.0/29"], ServiceAllocation: new ServiceAllocationSpec(Namespaces: ["elsewhere"]))], []);
        var allocator = new Allocator(pools: config.Pools);

        // The namespace's name is known without its object: a pool that lists namespaces by name judges it at once.
        Assert.Equal(
            ["AwaitingNamespace", "AwaitingNamespace"],
            allocator.ReconcileAll([Svc("a", null, holds: ["192.0.2.1"]), Svc("b", null, holds: ["203.0.113.1"])]).Select(Show));
        Assert.Equal(UInt128.Zero, allocator.GetStats("named").AssignedIPv4);
    }

    [Theory]
    // Still admitted: it keeps its address.
    [InlineData("gold", "gold", "Assigned 192.0.2.0", false)]
    // No longer admitted: moved to a pool that admits it, as at a pool edit.
    [InlineData("gold", "plain", "Assigned 198.51.100.0", true)]
    // Now admitted by a pool of higher priority too: it keeps what it has (a label is no reason to renumber).
    [InlineData("plain", "gold", "Assigned 198.51.100.0", false)]
    public void A_namespace_relabelled_rejudges_its_services_keeping_what_their_pool_still_admits(string before, string after, string expected, bool changed)
    {
        var labels = new Dictionary<string, Dictionary<string, string>> { ["gold"] = Gold, ["plain"] = NoLabels };
        var allocator = new Allocator(pools: Pools());
        allocator.Reconcile(Svc("web", labels[before]));

        var again = allocator.Reconcile(Svc("web", labels[after]));

        Assert.Equal(expected, Show(again));
        Assert.Equal(changed, again.Changed);
    }

    [Fact]
    public void A_namespace_gone_from_the_cache_leaves_its_services_holding_what_they_have()
    {
        var allocator = new Allocator(pools: Pools());
        allocator.Reconcile(Svc("web", Gold));

        var gone = allocator.Reconcile(Svc("web", null));

        Assert.Equal("AwaitingNamespace 192.0.2.0", Show(gone));
        Assert.False(gone.Changed);
        Assert.Equal("Assigned 192.0.2.0", Show(allocator.Reconcile(Svc("web", Gold))));
    }
}
