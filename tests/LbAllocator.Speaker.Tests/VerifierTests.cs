using LbAllocator.Core;

namespace LbAllocator.Speaker.Tests;

/// <summary>Who checks a Service's announcement, and what the answers heard say.</summary>
public class VerifierTests
{
    private static readonly Ip V4 = Ip.Parse("192.0.2.10");
    private static readonly Ip V6 = Ip.Parse("2001:db8::10");
    private static readonly MacAddress OwnerMac = new(0x02_00_00_00_00_0b);
    private static readonly MacAddress Stranger = new(0x02_00_00_00_00_99);
    private static readonly VerifyTarget Target = new("default/web", "default-web-1", "node-b", [V4, V6], [OwnerMac]);

    [Fact]
    public void The_verifier_is_never_the_owner_and_every_node_names_the_same_one()
    {
        string[] alive = ["node-a", "node-b", "node-c", "node-d"];
        var chosen = Verifier.VerifierOf("default/web", "node-b", alive);
        Assert.NotNull(chosen);
        Assert.NotEqual("node-b", chosen);
        Assert.Equal(chosen, Verifier.VerifierOf("default/web", "node-b", alive.Reverse()));
        Assert.Null(Verifier.VerifierOf("default/web", "node-b", ["node-b"]));
    }

    [Fact]
    public void A_verifier_leaving_moves_only_its_own_services()
    {
        var nodes = Enumerable.Range(0, 8).Select(i => $"node-{i}").ToList();
        var services = Enumerable.Range(0, 200).Select(i => $"default/s{i}").ToList();
        var before = services.ToDictionary(s => s, s => Verifier.VerifierOf(s, "node-0", nodes));
        Assert.True(before.Values.Distinct().Count() > 3, "the checks are spread over the nodes");
        var after = services.ToDictionary(s => s, s => Verifier.VerifierOf(s, "node-0", nodes.Where(n => n != "node-3")));
        Assert.All(services.Where(s => before[s] != "node-3"), s => Assert.Equal(before[s], after[s]));
        Assert.DoesNotContain("node-3", after.Values);
    }

    [Fact]
    public void Every_address_answered_by_the_owner_alone_is_verified()
    {
        var verdict = Verifier.Judge(Target, Heard((V4, [OwnerMac]), (V6, [OwnerMac])));
        Assert.Equal(new Verdict(true, "Answered", "192.0.2.10, 2001:db8::10 answered by node node-b (02:00:00:00:00:0b)"), verdict);
    }

    [Fact]
    public void An_address_nobody_answers_is_not_verified()
    {
        var verdict = Verifier.Judge(Target, Heard((V4, [OwnerMac])));
        Assert.Equal(new Verdict(false, "NoAnswer", "2001:db8::10 not answered (the owner is node node-b (02:00:00:00:00:0b))"), verdict);
    }

    [Fact]
    public void An_address_another_mac_answers_is_not_verified_even_when_the_owner_answers_too()
    {
        var verdict = Verifier.Judge(Target, Heard((V4, [OwnerMac, Stranger])));
        Assert.False(verdict.Verified);
        Assert.Equal("AnsweredByOthers", verdict.Reason);
        Assert.Equal("192.0.2.10 answered by 02:00:00:00:00:99, not only by node node-b (02:00:00:00:00:0b); 2001:db8::10 not answered (the owner is node node-b (02:00:00:00:00:0b))", verdict.Message);
    }

    private static Dictionary<Ip, IReadOnlyCollection<MacAddress>> Heard(params (Ip Address, MacAddress[] Macs)[] answers) =>
        answers.ToDictionary(a => a.Address, a => (IReadOnlyCollection<MacAddress>)a.Macs);
}
