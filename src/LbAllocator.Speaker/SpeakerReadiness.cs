using k8s.Models;
using LbAllocator.Hosting;
using LbAllocator.Speaker.Lan;
using Microsoft.Extensions.Logging;

namespace LbAllocator.Speaker;

/// <summary>
/// What the speaker says about itself after each pass: the readiness gates (caches synced; on the LAN: a member that
/// answers, or why not), the alive and members metrics, and a Node event when it starts or stops being unable to answer somewhere.
/// </summary>
public sealed partial class SpeakerReadiness(SpeakerOptions options, Health health, SpeakerMetrics metrics, IStatusWriter writer, ILogger<SpeakerReadiness> logger)
{
    public const string CachesGate = "caches";
    public const string LanGate = "lan";

    private string? _cannotAnswer; // as last reported
    private (MemberState, string?, bool)? _membership; // as last logged

    public void Starting() =>
        health.SetReady(CachesGate, false, "listing Services, EndpointSlices, the node digest, pools, advertisements and statuses");

    public void Synced() => health.SetReady(CachesGate, true, "synced");

    /// <param name="answering">Whether the membership lets this node answer now.</param>
    /// <param name="cannotAnswer">Where this node cannot answer (interfaces it cannot capture on), or null.</param>
    /// <param name="node">This node's Node object, for the event, if known.</param>
    public void Report(MembershipView view, bool answering, string? cannotAnswer, V1Node? node)
    {
        metrics.SetAlive(view.State == MemberState.Member);
        metrics.SetLanMembers(view.Alive.Count);
        if (_membership != (view.State, view.Why, answering))
        {
            _membership = (view.State, view.Why, answering);
            LogMembership(view.State, answering, view.Alive.Count, view.Neighbors, view.Heard, view.Why ?? "");
        }

        var lan = view.State switch
        {
            MemberState.Member when answering => $"member of the segment, answering; {view.Heard} of {view.Neighbors} ring neighbours heard",
            MemberState.Member => $"member of the segment, but fewer than half of its {view.Neighbors} ring neighbours show they hear it: not answering",
            _ => view.Why ?? "not a member of the segment",
        };
        health.SetReady(LanGate, cannotAnswer is null && answering, cannotAnswer is null ? lan : $"cannot answer on {cannotAnswer}; {lan}");
        if (cannotAnswer == _cannotAnswer)
        {
            return;
        }

        var wasTrouble = _cannotAnswer is not null;
        _cannotAnswer = cannotAnswer;
        if (cannotAnswer is not null)
        {
            LogCannotAnswer(cannotAnswer);
        }
        else
        {
            LogCanAnswer();
        }

        if (node is not null && (cannotAnswer is not null || wasTrouble))
        {
            // Listed objects carry no kind, and the event recorder's default is a Service; the node's version is the digest's.
            writer.Record(new V1Node { ApiVersion = "v1", Kind = V1Node.KubeKind, Metadata = new V1ObjectMeta { Name = node.Metadata.Name, Uid = node.Metadata.Uid } }, cannotAnswer is not null
                ? new PlannedEvent($"node/{options.NodeName}", "Warning", "CannotAnswer", $"speaker cannot answer ARP/NDP on {cannotAnswer}: not standing for election for what it cannot serve")
                : new PlannedEvent($"node/{options.NodeName}", "Normal", "Answering", "speaker answers ARP/NDP on every interface it announces on again"));
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Segment membership: {State}, answering {Answering}; {Alive} speakers alive, {Heard} of {Neighbors} ring neighbours heard. {Why}")]
    private partial void LogMembership(MemberState state, bool answering, int alive, int neighbors, int heard, string why);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot answer on {Problem}: not standing for election for what it cannot serve")]
    private partial void LogCannotAnswer(string problem);

    [LoggerMessage(Level = LogLevel.Information, Message = "Answering on every interface announced on again")]
    private partial void LogCanAnswer();
}
